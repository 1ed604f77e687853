package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Write encodes tensors and metadata as a safetensors file to w.
//
// The header lists "__metadata__" first (omitted when metadata is empty),
// then the tensors sorted by name; the data buffer holds the tensors in the
// given order. The header is padded with spaces so that the data buffer
// starts at a byte offset that is a multiple of 8.
//
// Before writing anything, Write checks that every name is non-empty,
// valid UTF-8, unique and not "__metadata__", that every dtype is
// supported, every dimension non-negative, and that len(Data) equals the
// element count times the dtype size; it returns a *FormatError naming the
// offending tensor otherwise.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr, err := encodeHeader(tensors, metadata)
	if err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	for i := range tensors {
		if _, err := w.Write(tensors[i].Data); err != nil {
			return fmt.Errorf("safetensors: write tensor %q: %w", tensors[i].Name, err)
		}
	}
	return nil
}

// encodeHeader validates the tensors and returns the length prefix plus the
// padded JSON header.
func encodeHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	type entry struct {
		t          *Tensor
		begin, end int
	}
	entries := make([]entry, len(tensors))
	seen := make(map[string]bool, len(tensors))
	off := 0
	for i := range tensors {
		t := &tensors[i]
		switch {
		case t.Name == "":
			return nil, formatErr("tensor #%d has an empty name; every tensor needs a unique non-empty name", i)
		case !utf8.ValidString(t.Name):
			return nil, formatErr("tensor %q: name is not valid UTF-8", t.Name)
		case t.Name == metadataKey:
			return nil, formatErr("tensor %q: name is reserved for the metadata object; rename the tensor", t.Name)
		case seen[t.Name]:
			return nil, formatErr("tensor %q: duplicate name; tensor names must be unique", t.Name)
		case !t.DType.Valid():
			return nil, formatErr("tensor %q: unknown dtype %q (supported: %s)", t.Name, t.DType, supportedDTypes())
		}
		seen[t.Name] = true
		numel, ok := numElements(t.Shape)
		if !ok || numel > maxInt/t.DType.Size() {
			return nil, formatErr("tensor %q: shape %v is invalid: dimensions must be non-negative and the byte size must fit in an int", t.Name, t.Shape)
		}
		need := numel * t.DType.Size()
		if len(t.Data) != need {
			return nil, formatErr("tensor %q: data is %d bytes but shape %v of %s needs %d", t.Name, len(t.Data), t.Shape, t.DType, need)
		}
		if off > maxInt-need {
			return nil, formatErr("tensor %q: total data size overflows an int", t.Name)
		}
		entries[i] = entry{t, off, off + need}
		off += need
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, formatErr("metadata key %q: key and value must be valid UTF-8", k)
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		switch {
		case a.t.Name < b.t.Name:
			return -1
		case a.t.Name > b.t.Name:
			return 1
		}
		return 0
	})

	buf := make([]byte, 8, 8+64+96*len(tensors))
	buf = append(buf, '{')
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf = appendString(buf, metadataKey)
		buf = append(buf, ":{"...)
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, k)
			buf = append(buf, ':')
			buf = appendString(buf, metadata[k])
		}
		buf = append(buf, '}')
	}
	for i, e := range entries {
		if i > 0 || len(metadata) > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, e.t.Name)
		buf = append(buf, `:{"dtype":`...)
		buf = appendString(buf, string(e.t.DType))
		buf = append(buf, `,"shape":[`...)
		for j, d := range e.t.Shape {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, int64(d), 10)
		}
		buf = append(buf, `],"data_offsets":[`...)
		buf = strconv.AppendInt(buf, int64(e.begin), 10)
		buf = append(buf, ',')
		buf = strconv.AppendInt(buf, int64(e.end), 10)
		buf = append(buf, "]}"...)
	}
	buf = append(buf, '}')
	for len(buf)%8 != 0 {
		buf = append(buf, ' ')
	}
	if len(buf)-8 > MaxHeaderSize {
		return nil, formatErr("header would be %d bytes, over the %d-byte limit readers accept; use fewer or shorter names or less metadata", len(buf)-8, MaxHeaderSize)
	}
	binary.LittleEndian.PutUint64(buf[:8], uint64(len(buf)-8))
	return buf, nil
}

// appendString appends s as a JSON string literal.
func appendString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s) // cannot fail for a valid UTF-8 string
	return append(buf, b...)
}

// WriteFile writes tensors and metadata (as Write does) to the file at path,
// atomically: the bytes go to a temporary file in the same directory, which
// is synced, closed and renamed over path, and the directory is then
// synced. On any error the temporary file is removed and an existing file
// at path is left untouched. A new file gets permissions 0644; a replaced
// file keeps its permission bits.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) (err error) {
	hdr, err := encodeHeader(tensors, metadata)
	if err != nil {
		return withPath(err, path)
	}
	fail := func(what string, err error, hint string) error {
		return fmt.Errorf("safetensors: write %s: %s: %w; %s", path, what, err, hint)
	}
	dir := filepath.Dir(path)
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return fmt.Errorf("safetensors: write %s: path is a directory; choose a file path", path)
		}
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fail("directory does not exist", err, "create it first or choose another output path")
		case errors.Is(err, fs.ErrPermission):
			return fail("directory not writable", err, "choose another output path or fix its permissions")
		}
		return fail("cannot create temporary file", err, "choose another output path")
	}
	tmpName := tmp.Name()
	renamed := false
	defer func() {
		if err != nil && !renamed {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if _, err = bw.Write(hdr); err == nil {
		for i := range tensors {
			if _, err = bw.Write(tensors[i].Data); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fail("writing temporary file "+tmpName+" failed", err, "check free disk space or choose another output path")
	}
	if err = tmp.Chmod(mode); err != nil {
		return fail("cannot set permissions", err, "choose another output path")
	}
	if err = tmp.Sync(); err != nil {
		return fail("fsync of temporary file failed", err, "check the disk or choose another output path")
	}
	if err = tmp.Close(); err != nil {
		return fail("closing temporary file failed", err, "check the disk or choose another output path")
	}
	if err = os.Rename(tmpName, path); err != nil {
		return fail("cannot rename temporary file into place", err, "choose another output path")
	}
	renamed = true
	// The file is in place; a failed directory sync means it may not
	// survive a crash, which the caller should still hear about.
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("safetensors: write %s: file written but fsync of directory %s failed: %w; the file may not survive a crash", path, dir, err)
	}
	return nil
}
