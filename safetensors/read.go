package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// rawEntry is one tensor entry of the header, syntactically decoded but not
// yet checked against the dtype table or the data buffer.
type rawEntry struct {
	name    string
	dtype   string
	shape   []uint64
	offsets []uint64
}

// Parse decodes a whole safetensors file held in b. It does not copy tensor
// data: each Tensor.Data is a sub-slice of b, so b must not be modified
// while the File is in use.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, formatErr("file is %d bytes, shorter than the 8-byte header length prefix; it is truncated or not a safetensors file", len(b))
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if err := checkHeaderLen(n); err != nil {
		return nil, err
	}
	if n > uint64(len(b)-8) {
		return nil, formatErr("header length %d is larger than the rest of the file (%d bytes); the file is truncated or not a safetensors file", n, len(b)-8)
	}
	hdr := b[8 : 8+n]
	entries, meta, err := parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	return build(entries, meta, b[8+n:])
}

// Read decodes a safetensors file from r into memory. It reads the header,
// then the data buffer the header describes plus at most one more byte, and
// fails if r holds bytes past the end of the last tensor. Memory grows only
// as bytes actually arrive, so a bogus length cannot force a huge allocation.
func Read(r io.Reader) (*File, error) {
	var pre [8]byte
	if k, err := io.ReadFull(r, pre[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, formatErr("file is %d bytes, shorter than the 8-byte header length prefix; it is truncated or not a safetensors file", k)
		}
		return nil, fmt.Errorf("safetensors: read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(pre[:])
	if err := checkHeaderLen(n); err != nil {
		return nil, err
	}
	// Read through a LimitReader so a bogus length cannot force a large
	// allocation before the bytes actually arrive.
	hdr, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("safetensors: read header: %w", err)
	}
	if uint64(len(hdr)) < n {
		return nil, formatErr("header length %d is larger than the rest of the file (%d bytes); the file is truncated or not a safetensors file", n, len(hdr))
	}
	entries, meta, err := parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	var end uint64
	for _, e := range entries {
		for _, o := range e.offsets {
			end = max(end, o)
		}
	}
	limit := int64(maxInt - 1)
	if end < uint64(limit) {
		limit = int64(end)
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("safetensors: read data buffer: %w", err)
	}
	if int64(len(data)) > limit {
		// There is at least one byte past the last tensor. Report the
		// tensor-level problems first, if any, then the trailing bytes.
		if _, err := build(entries, meta, data[:limit]); err != nil {
			return nil, err
		}
		return nil, formatErr("data buffer continues past the end of the last tensor (byte %d); trailing bytes not covered by any tensor are not allowed", limit)
	}
	return build(entries, meta, data)
}

// ReadFile reads the whole safetensors file at path into memory and decodes
// it as Parse does (tensor data aliases that one buffer). Errors about the
// file's content carry the path.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: read %s: %w", path, err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, withPath(err, path)
	}
	return f, nil
}

func checkHeaderLen(n uint64) error {
	if n > MaxHeaderSize {
		return formatErr("header length %d exceeds the %d-byte limit; the file is corrupt or not a safetensors file", n, MaxHeaderSize)
	}
	if n < 2 {
		return formatErr("header length %d is too small to hold a JSON object; the file is corrupt or not a safetensors file", n)
	}
	return nil
}

// parseHeader decodes the JSON header token by token, so that duplicate
// keys, which encoding/json would silently merge, are detected.
func parseHeader(hdr []byte) ([]rawEntry, map[string]string, error) {
	if !utf8.Valid(hdr) {
		return nil, nil, formatErr("header is not valid UTF-8")
	}
	if hdr[0] != '{' {
		r, _ := utf8.DecodeRune(hdr)
		return nil, nil, formatErr("header does not start with '{' (found %q); it must be a JSON object", r)
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // the opening '{'
		return nil, nil, jsonErr(err)
	}
	var (
		entries []rawEntry
		meta    map[string]string
		seen    = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, jsonErr(err)
		}
		name, _ := tok.(string) // object keys are always strings
		if seen[name] {
			return nil, nil, formatErr("header has duplicate key %q; names must be unique", name)
		}
		seen[name] = true
		if name == metadataKey {
			if meta, err = parseMetadata(dec); err != nil {
				return nil, nil, err
			}
			continue
		}
		if name == "" {
			return nil, nil, formatErr("header has a tensor with an empty name")
		}
		e, err := parseEntry(dec, name)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, nil, jsonErr(err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, jsonErr(err)
		}
		return nil, nil, formatErr("header has data after the JSON object (%v); only trailing spaces are allowed", tok)
	}
	return entries, meta, nil
}

func jsonErr(err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return formatErr("header is not valid JSON: unexpected end of header")
	}
	return formatErr("header is not valid JSON: %v", err)
}

func parseMetadata(dec *json.Decoder) (map[string]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(err)
	}
	if tok == nil { // "__metadata__": null means no metadata
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, formatErr("%s must be an object of string values, found %s", metadataKey, describe(tok))
	}
	meta := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		key, _ := tok.(string)
		if _, dup := meta[key]; dup {
			return nil, formatErr("%s has duplicate key %q", metadataKey, key)
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		val, ok := tok.(string)
		if !ok {
			return nil, formatErr("%s key %q must have a string value, found %s", metadataKey, key, describe(tok))
		}
		meta[key] = val
	}
	if _, err := dec.Token(); err != nil {
		return nil, jsonErr(err)
	}
	return meta, nil
}

func parseEntry(dec *json.Decoder, name string) (rawEntry, error) {
	e := rawEntry{name: name}
	tok, err := dec.Token()
	if err != nil {
		return e, jsonErr(err)
	}
	if tok != json.Delim('{') {
		return e, formatErr("tensor %q: entry must be an object with dtype, shape and data_offsets, found %s", name, describe(tok))
	}
	var haveDType, haveShape, haveOffsets bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return e, jsonErr(err)
		}
		field, _ := tok.(string)
		switch field {
		case "dtype":
			if haveDType {
				return e, formatErr("tensor %q: duplicate field \"dtype\"", name)
			}
			haveDType = true
			tok, err := dec.Token()
			if err != nil {
				return e, jsonErr(err)
			}
			s, ok := tok.(string)
			if !ok {
				return e, formatErr("tensor %q: dtype must be a string, found %s", name, describe(tok))
			}
			e.dtype = s
		case "shape":
			if haveShape {
				return e, formatErr("tensor %q: duplicate field \"shape\"", name)
			}
			haveShape = true
			if e.shape, err = parseUints(dec, name, "shape"); err != nil {
				return e, err
			}
		case "data_offsets":
			if haveOffsets {
				return e, formatErr("tensor %q: duplicate field \"data_offsets\"", name)
			}
			haveOffsets = true
			if e.offsets, err = parseUints(dec, name, "data_offsets"); err != nil {
				return e, err
			}
			if len(e.offsets) != 2 {
				return e, formatErr("tensor %q: data_offsets must be two integers [begin, end], found %d", name, len(e.offsets))
			}
		default:
			// Unknown fields are ignored, as by the reference reader.
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return e, jsonErr(err)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return e, jsonErr(err)
	}
	switch {
	case !haveDType:
		return e, formatErr("tensor %q: missing field \"dtype\"", name)
	case !haveShape:
		return e, formatErr("tensor %q: missing field \"shape\"", name)
	case !haveOffsets:
		return e, formatErr("tensor %q: missing field \"data_offsets\"", name)
	}
	return e, nil
}

// parseUints decodes a JSON array of non-negative integers that fit in int.
func parseUints(dec *json.Decoder, name, field string) ([]uint64, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(err)
	}
	if tok != json.Delim('[') {
		return nil, formatErr("tensor %q: %s must be an array of non-negative integers, found %s", name, field, describe(tok))
	}
	out := []uint64{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, formatErr("tensor %q: %s must be an array of non-negative integers, found element %s", name, field, describe(tok))
		}
		s := string(num)
		v, err := strconv.ParseUint(s, 10, 64)
		switch {
		case strings.HasPrefix(s, "-"):
			return nil, formatErr("tensor %q: %s has negative value %s", name, field, s)
		case strings.ContainsAny(s, ".eE"):
			return nil, formatErr("tensor %q: %s has non-integer value %s", name, field, s)
		case err != nil || v > uint64(maxInt):
			return nil, formatErr("tensor %q: %s value %s is too large", name, field, s)
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, jsonErr(err)
	}
	return out, nil
}

// describe names the kind of a JSON token for error messages.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean " + strconv.FormatBool(v)
	case string:
		return "string " + strconv.Quote(v)
	case json.Number:
		return "number " + string(v)
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "an array"
	}
	return fmt.Sprint(tok)
}

// build checks every entry against the dtype table and the data buffer and
// assembles the File. Tensor data aliases buf.
func build(entries []rawEntry, meta map[string]string, buf []byte) (*File, error) {
	f := &File{Metadata: meta, Tensors: make([]Tensor, len(entries))}
	for i, e := range entries {
		dt := DType(e.dtype)
		if !dt.Valid() {
			return nil, formatErr("tensor %q: unknown dtype %q (supported: %s)", e.name, e.dtype, supportedDTypes())
		}
		shape := make([]int, len(e.shape))
		for j, d := range e.shape {
			shape[j] = int(d) // parseUints guarantees d <= maxInt
		}
		numel, ok := numElements(shape)
		if !ok || numel > maxInt/dt.Size() {
			return nil, formatErr("tensor %q: shape %v of %s overflows: its byte size does not fit in a 64-bit integer", e.name, shape, dt)
		}
		need := numel * dt.Size()
		begin, end := int(e.offsets[0]), int(e.offsets[1])
		if begin > end {
			return nil, formatErr("tensor %q: data_offsets [%d %d] are invalid: begin is after end", e.name, begin, end)
		}
		if end-begin != need {
			return nil, formatErr("tensor %q: data_offsets [%d %d] hold %d bytes but shape %v of %s needs %d", e.name, begin, end, end-begin, shape, dt, need)
		}
		if end > len(buf) {
			return nil, formatErr("tensor %q: data_offsets [%d %d] extend beyond the end of the %d-byte data buffer; the file is truncated", e.name, begin, end, len(buf))
		}
		f.Tensors[i] = Tensor{Name: e.name, DType: dt, Shape: shape, Data: buf[begin:end:end]}
	}
	// Sort by offset and require the ranges to tile the buffer exactly.
	type span struct{ begin, end int }
	spans := make(map[string]span, len(entries))
	for _, e := range entries {
		spans[e.name] = span{int(e.offsets[0]), int(e.offsets[1])}
	}
	slices.SortStableFunc(f.Tensors, func(a, b Tensor) int {
		sa, sb := spans[a.Name], spans[b.Name]
		if sa.begin != sb.begin {
			return sa.begin - sb.begin
		}
		if sa.end != sb.end {
			return sa.end - sb.end
		}
		return strings.Compare(a.Name, b.Name)
	})
	covered := 0
	prev := ""
	for _, t := range f.Tensors {
		s := spans[t.Name]
		if s.begin < covered {
			p := spans[prev]
			return nil, formatErr("tensor %q: data_offsets [%d %d] overlap tensor %q at [%d %d]; tensor byte ranges must not overlap", t.Name, s.begin, s.end, prev, p.begin, p.end)
		}
		if s.begin > covered {
			return nil, formatErr("data buffer has a hole: bytes [%d %d) before tensor %q are not covered by any tensor; ranges must be contiguous", covered, s.begin, t.Name)
		}
		covered = s.end
		prev = t.Name
	}
	if covered != len(buf) {
		return nil, formatErr("data buffer is %d bytes but the tensors cover only the first %d; trailing bytes not covered by any tensor are not allowed", len(buf), covered)
	}
	return f, nil
}
