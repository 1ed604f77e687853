package imageio

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/diffuse-go/diffuse/tensor"
)

// SavePNG writes img as a PNG file at path atomically: it encodes into a
// temporary file in the same folder, syncs and closes it, and renames it over
// path. On any error the temporary file is removed and an existing file at
// path is left as it was. The folder must exist. Errors name the path and
// say what to do.
func SavePNG(path string, img image.Image) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return saveErr(path, "cannot create a file in its folder", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<16)
	if err := png.Encode(bw, img); err != nil {
		return saveErr(path, "cannot encode the image", err)
	}
	if err := bw.Flush(); err != nil {
		return saveErr(path, "cannot write", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return saveErr(path, "cannot set permissions", err)
	}
	if err := f.Sync(); err != nil {
		return saveErr(path, "cannot sync to disk", err)
	}
	if err := f.Close(); err != nil {
		return saveErr(path, "cannot close", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return saveErr(path, "cannot replace the file", err)
	}
	// Make the rename itself durable; a folder that cannot be synced is not
	// worth failing a finished write for.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func saveErr(path, what string, err error) error {
	hint := "check the path"
	switch {
	case errors.Is(err, fs.ErrNotExist):
		hint = "create the folder " + filepath.Dir(path) + " first"
	case errors.Is(err, fs.ErrPermission):
		hint = "the folder " + filepath.Dir(path) + " is not writable: pick another output folder or fix its permissions"
	case strings.Contains(err.Error(), "not a directory"):
		hint = filepath.Dir(path) + " is not a folder: pick another output path"
	case strings.Contains(err.Error(), "no space"):
		hint = "free some disk space"
	case strings.Contains(err.Error(), "is a directory") || strings.Contains(err.Error(), "file exists"):
		hint = path + " is a folder: pick a file name"
	}
	return fmt.Errorf("imageio: save %s: %s: %v; %s", path, what, err, hint)
}

// SaveSingles writes each sample of t ([N, C, H, W], values in [-1, 1]) as
// its own PNG dir/prefix_0000.png, dir/prefix_0001.png, ... (four digits, more
// when N > 10000), creating dir if needed, and returns the paths written.
// It stops at the first error, returning the paths written so far.
func SaveSingles(dir, prefix string, t *tensor.Tensor) ([]string, error) {
	n, _, _, _ := checkNCHW("SaveSingles", t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("imageio: cannot create output folder %s: %v; pick another folder", dir, err)
	}
	digits := max(4, len(fmt.Sprint(n-1)))
	paths := make([]string, 0, n)
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%s_%0*d.png", prefix, digits, i))
		if err := SavePNG(p, ToImage(t, i)); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}
