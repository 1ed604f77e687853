package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// rawFile assembles a file from a literal header (unpadded) and data buffer.
func rawFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// seq returns n bytes 0, 1, 2, ...
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func sampleTensors() []Tensor {
	return []Tensor{
		{Name: "w.f32", DType: F32, Shape: []int{2, 3}, Data: Float32Bytes([]float32{1, -2, 3.5, 0, float32(math.Inf(1)), 1e-40})},
		{Name: "empty.f32", DType: F32, Shape: []int{0, 3}, Data: []byte{}},
		{Name: "h.f16", DType: F16, Shape: []int{4}, Data: Float32ToF16([]float32{1, -0.5, 65504, 6e-8})},
		{Name: "b.bf16", DType: BF16, Shape: []int{2, 2}, Data: Float32ToBF16([]float32{1, 2, -3, 1e30})},
		{Name: "d.f64", DType: F64, Shape: []int{3}, Data: seq(24)},
		{Name: "scalar", DType: F32, Shape: []int{}, Data: Float32Bytes([]float32{42})},
		{Name: "i64", DType: I64, Shape: []int{2}, Data: seq(16)},
		{Name: "i32", DType: I32, Shape: []int{1, 1, 1}, Data: seq(4)},
		{Name: "i16", DType: I16, Shape: []int{3}, Data: seq(6)},
		{Name: "i8", DType: I8, Shape: []int{5}, Data: seq(5)},
		{Name: "u8", DType: U8, Shape: []int{3}, Data: seq(3)},
		{Name: "bool", DType: BOOL, Shape: []int{2}, Data: []byte{0, 1}},
		{Name: "u16", DType: U16, Shape: []int{1}, Data: seq(2)},
		{Name: "u32", DType: U32, Shape: []int{1}, Data: seq(4)},
		{Name: "u64", DType: U64, Shape: []int{1}, Data: seq(8)},
		{Name: "f8a", DType: F8E4M3, Shape: []int{2}, Data: []byte{0x38, 0x7e}},
		{Name: "f8b", DType: F8E5M2, Shape: []int{2}, Data: []byte{0x3c, 0x7c}},
		{Name: "zero.i8", DType: I8, Shape: []int{0}, Data: nil},
	}
}

func encode(t testing.TB, tensors []Tensor, meta map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, tensors, meta); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

func sameTensors(t testing.TB, got, want []Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d tensors, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("tensor %d: got {%q %s %v %d bytes}, want {%q %s %v %d bytes}", i,
				g.Name, g.DType, g.Shape, len(g.Data), w.Name, w.DType, w.Shape, len(w.Data))
		}
		if g.Shape == nil {
			t.Errorf("tensor %q: Shape is nil, want non-nil (possibly empty)", g.Name)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	all := sampleTensors()
	cases := []struct {
		name    string
		tensors []Tensor
		meta    map[string]string
	}{
		{"no tensors", nil, nil},
		{"no tensors with metadata", nil, map[string]string{"format": "pt"}},
		{"single scalar", all[5:6], nil},
		{"single zero-size", all[1:2], nil},
		{"all dtypes", all, nil},
		{"all dtypes with metadata", all, map[string]string{
			"format": "pt", "": "empty key", "quote\"s": "\\ back <html> & é 日本 \n\t\u0001",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := encode(t, tc.tensors, tc.meta)
			n := binary.LittleEndian.Uint64(b)
			if (8+n)%8 != 0 {
				t.Errorf("data buffer starts at %d, not a multiple of 8", 8+n)
			}
			if hdr := string(b[8 : 8+n]); strings.TrimRight(hdr, " ") != strings.TrimSpace(hdr) || !json.Valid([]byte(hdr)) {
				t.Errorf("header %q is not a space-padded JSON object", hdr)
			}
			readers := map[string]func() (*File, error){
				"Parse": func() (*File, error) { return Parse(b) },
				"Read":  func() (*File, error) { return Read(bytes.NewReader(b)) },
				"ReadFile": func() (*File, error) {
					p := filepath.Join(t.TempDir(), "x.safetensors")
					if err := WriteFile(p, tc.tensors, tc.meta); err != nil {
						return nil, err
					}
					return ReadFile(p)
				},
			}
			for rname, read := range readers {
				f, err := read()
				if err != nil {
					t.Fatalf("%s: %v", rname, err)
				}
				sameTensors(t, f.Tensors, tc.tensors)
				if len(tc.meta) == 0 && f.Metadata != nil {
					t.Errorf("%s: Metadata = %v, want nil", rname, f.Metadata)
				}
				if len(tc.meta) > 0 && !reflect.DeepEqual(f.Metadata, tc.meta) {
					t.Errorf("%s: Metadata = %q, want %q", rname, f.Metadata, tc.meta)
				}
				for _, want := range tc.tensors {
					got, ok := f.Get(want.Name)
					if !ok || got.Name != want.Name {
						t.Errorf("%s: Get(%q) = %v, %v", rname, want.Name, got, ok)
					}
				}
				if _, ok := f.Get("missing"); ok {
					t.Errorf("%s: Get(missing) found a tensor", rname)
				}
				wantNames := []string{}
				for _, x := range tc.tensors {
					wantNames = append(wantNames, x.Name)
				}
				if got := f.Names(); !slices.Equal(got, wantNames) {
					t.Errorf("%s: Names() = %q, want %q", rname, got, wantNames)
				}
			}
		})
	}
}

func TestWriteHeaderLayout(t *testing.T) {
	tensors := []Tensor{
		{Name: "b", DType: F32, Shape: []int{1}, Data: seq(4)},
		{Name: "a", DType: U8, Shape: []int{2}, Data: seq(2)},
	}
	b := encode(t, tensors, map[string]string{"y": "2", "x": "1"})
	n := binary.LittleEndian.Uint64(b)
	want := `{"__metadata__":{"x":"1","y":"2"},"a":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`
	if got := strings.TrimRight(string(b[8:8+n]), " "); got != want {
		t.Errorf("header\n got %s\nwant %s", got, want)
	}
	if n%8 != 0 || int(n)-len(want) >= 8 {
		t.Errorf("header length %d: want the smallest multiple of 8 >= %d", n, len(want))
	}
	if data := b[8+n:]; !bytes.Equal(data, append(seq(4), seq(2)...)) {
		t.Errorf("data buffer %v is not the tensors' data in the given order", data)
	}
	// File order is by offset, not by name.
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Names(); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Names() = %q, want [b a]", got)
	}
}

func TestParseZeroCopy(t *testing.T) {
	b := encode(t, sampleTensors()[:2], nil)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := f.Get("w.f32")
	if cap(w.Data) != len(w.Data) {
		t.Errorf("cap(Data) = %d, want %d so appends cannot clobber neighbours", cap(w.Data), len(w.Data))
	}
	b[len(b)-len(w.Data)] ^= 0xff // w.f32 is the last non-empty tensor
	if w.Data[0] != b[len(b)-len(w.Data)] {
		t.Errorf("Tensor.Data does not alias the parsed buffer")
	}
}

func TestWriteValidation(t *testing.T) {
	ok := Tensor{Name: "ok", DType: F32, Shape: []int{2}, Data: seq(8)}
	cases := []struct {
		name    string
		tensors []Tensor
		meta    map[string]string
		want    string
	}{
		{"empty name", []Tensor{ok, {DType: U8, Shape: []int{1}, Data: seq(1)}}, nil, "tensor #1 has an empty name"},
		{"duplicate name", []Tensor{ok, ok}, nil, `tensor "ok": duplicate name`},
		{"reserved name", []Tensor{{Name: "__metadata__", DType: U8, Shape: []int{}, Data: seq(1)}}, nil, "reserved"},
		{"unknown dtype", []Tensor{{Name: "x", DType: "F33", Shape: []int{1}, Data: seq(4)}}, nil, `tensor "x": unknown dtype "F33"`},
		{"zero dtype", []Tensor{{Name: "x", Shape: []int{1}, Data: seq(4)}}, nil, `unknown dtype ""`},
		{"negative dim", []Tensor{{Name: "x", DType: U8, Shape: []int{-1}, Data: nil}}, nil, `tensor "x": shape [-1] is invalid`},
		{"overflowing shape", []Tensor{{Name: "x", DType: F32, Shape: []int{1 << 31, 1 << 31, 4}, Data: nil}}, nil, `tensor "x": shape`},
		{"short data", []Tensor{{Name: "x", DType: F32, Shape: []int{32, 1, 3, 3}, Data: seq(100)}}, nil,
			`tensor "x": data is 100 bytes but shape [32 1 3 3] of F32 needs 1152`},
		{"long data", []Tensor{{Name: "x", DType: F16, Shape: []int{}, Data: seq(4)}}, nil, "data is 4 bytes but shape [] of F16 needs 2"},
		{"invalid utf8 name", []Tensor{{Name: "\xff", DType: U8, Shape: []int{}, Data: seq(1)}}, nil, "not valid UTF-8"},
		{"invalid utf8 metadata", nil, map[string]string{"k": "\xfe"}, "valid UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, tc.tensors, tc.meta)
			if err == nil {
				t.Fatal("Write succeeded, want error")
			}
			if !strings.HasPrefix(err.Error(), "safetensors: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("Write wrote %d bytes before failing validation", buf.Len())
			}
		})
	}
}

type malformedCase struct {
	name  string
	input []byte
	want  string
}

// malformedCases lists inputs that must be rejected, with a phrase the error
// must contain. They double as fuzz seeds.
func malformedCases() []malformedCase {
	f32 := func(name string, shape string, begin, end int) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":[` + itoa(begin) + `,` + itoa(end) + `]}`
	}
	lenPrefix := func(n uint64, rest string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	return []malformedCase{
		{"empty file", nil, "file is 0 bytes, shorter than the 8-byte header length prefix"},
		{"7 bytes", []byte{2, 0, 0, 0, 0, 0, 0}, "file is 7 bytes"},
		{"header longer than file", lenPrefix(100, "{}"), "header length 100 is larger than the rest of the file (2 bytes)"},
		{"absurd header length", lenPrefix(1<<62, "{}"), "exceeds the 104857600-byte limit"},
		{"max uint64 header length", lenPrefix(math.MaxUint64, "{}"), "exceeds"},
		{"header just over cap", lenPrefix(100<<20+1, "{}"), "exceeds"},
		{"zero header length", lenPrefix(0, ""), "too small"},
		{"invalid json", rawFile(`{"a":`, nil), "header is not valid JSON"},
		{"invalid json syntax", rawFile(`{"a" 1}`, nil), "header is not valid JSON"},
		{"trailing garbage", rawFile(`{}x`, nil), "not valid JSON"},
		{"two objects", rawFile(`{}{}`, nil), "data after the JSON object"},
		{"nul padding", rawFile("{}\x00\x00", nil), "not valid JSON"},
		{"header is array", rawFile(`[1,2]`, nil), "does not start with '{'"},
		{"header is string", rawFile(`"abc"`, nil), "must be a JSON object"},
		{"leading space", rawFile(` {}`, nil), "does not start with '{'"},
		{"invalid utf8", rawFile("{\"\xff\":1}", nil), "not valid UTF-8"},
		{"entry not object", rawFile(`{"a":1}`, nil), `tensor "a": entry must be an object`},
		{"entry is array", rawFile(`{"a":[0,4]}`, nil), `tensor "a": entry must be an object with dtype, shape and data_offsets, found an array`},
		{"empty name", rawFile(`{`+f32("", "[1]", 0, 4)+`}`, seq(4)), "empty name"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}`, seq(4)), `tensor "a": unknown dtype "F33"`},
		{"lowercase dtype", rawFile(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, seq(4)), `unknown dtype "f32"`},
		{"dtype not string", rawFile(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, seq(4)), `tensor "a": dtype must be a string`},
		{"missing dtype", rawFile(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, seq(4)), `tensor "a": missing field "dtype"`},
		{"missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, seq(4)), `tensor "a": missing field "shape"`},
		{"missing offsets", rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, seq(4)), `tensor "a": missing field "data_offsets"`},
		{"duplicate field", rawFile(`{"a":{"dtype":"F32","dtype":"U8","shape":[1],"data_offsets":[0,4]}}`, seq(4)), `tensor "a": duplicate field "dtype"`},
		{"negative dim", rawFile(`{`+f32("a", "[-1]", 0, 4)+`}`, seq(4)), `tensor "a": shape has negative value -1`},
		{"fractional dim", rawFile(`{`+f32("a", "[1.5]", 0, 4)+`}`, seq(4)), `tensor "a": shape has non-integer value 1.5`},
		{"exponent dim", rawFile(`{`+f32("a", "[1e0]", 0, 4)+`}`, seq(4)), "non-integer value 1e0"},
		{"string dim", rawFile(`{`+f32("a", `["1"]`, 0, 4)+`}`, seq(4)), `tensor "a": shape must be an array of non-negative integers, found element string "1"`},
		{"nested shape", rawFile(`{`+f32("a", `[[1]]`, 0, 4)+`}`, seq(4)), "shape must be an array"},
		{"shape not array", rawFile(`{`+f32("a", `4`, 0, 4)+`}`, seq(4)), `tensor "a": shape must be an array of non-negative integers, found number 4`},
		{"huge dim", rawFile(`{`+f32("a", `[18446744073709551616]`, 0, 4)+`}`, seq(4)), "shape value 18446744073709551616 is too large"},
		{"shape overflow", rawFile(`{`+f32("a", `[4294967296,4294967296,4]`, 0, 0)+`}`, nil), `tensor "a": shape [4294967296 4294967296 4] of F32 overflows`},
		{"byte size overflow", rawFile(`{`+f32("a", `[4611686018427387904]`, 0, 0)+`}`, nil), "overflows"},
		{"one offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}`, seq(4)), `tensor "a": data_offsets must be two integers [begin, end], found 1`},
		{"three offsets", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, seq(8)), "must be two integers"},
		{"offsets not array", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":"0,4"}}`, seq(4)), "data_offsets must be an array"},
		{"negative offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, seq(4)), "data_offsets has negative value -4"},
		{"float offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}}`, seq(4)), "data_offsets has non-integer value 4.0"},
		{"begin after end", rawFile(`{`+f32("a", "[1]", 8, 4)+`}`, seq(8)), `tensor "a": data_offsets [8 4] are invalid: begin is after end`},
		{"end beyond buffer", rawFile(`{`+f32("a", "[2]", 0, 8)+`}`, seq(4)), `tensor "a": data_offsets [0 8] extend beyond the end of the 4-byte data buffer`},
		{"huge offsets", rawFile(`{`+f32("a", "[1]", 1<<60, 1<<60+4)+`}`, seq(4)), "extend beyond the end"},
		{"length mismatch", rawFile(`{`+f32("res1.conv1.weight", "[32,1,3,3]", 0, 100)+`}`, seq(100)),
			`safetensors: tensor "res1.conv1.weight": data_offsets [0 100] hold 100 bytes but shape [32 1 3 3] of F32 needs 1152`},
		{"scalar length mismatch", rawFile(`{`+f32("s", "[]", 0, 0)+`}`, nil), "hold 0 bytes but shape [] of F32 needs 4"},
		{"overlap", rawFile(`{`+f32("a", "[1]", 0, 4)+`,`+f32("b", "[1]", 2, 6)+`}`, seq(6)), `tensor "b": data_offsets [2 6] overlap tensor "a" at [0 4]`},
		{"identical ranges", rawFile(`{`+f32("a", "[1]", 0, 4)+`,`+f32("b", "[1]", 0, 4)+`}`, seq(4)), "overlap"},
		{"zero-size inside tensor", rawFile(`{`+f32("a", "[1]", 0, 4)+`,`+f32("z", "[0]", 2, 2)+`}`, seq(4)), `tensor "z": data_offsets [2 2] overlap tensor "a"`},
		{"hole", rawFile(`{`+f32("a", "[1]", 0, 4)+`,`+f32("b", "[1]", 8, 12)+`}`, seq(12)), `data buffer has a hole: bytes [4 8) before tensor "b"`},
		{"hole at start", rawFile(`{`+f32("a", "[1]", 4, 8)+`}`, seq(8)), "hole: bytes [0 4)"},
		{"trailing bytes", rawFile(`{`+f32("a", "[1]", 0, 4)+`}`, seq(8)), "trailing bytes"},
		{"data but no tensors", rawFile(`{}`, seq(1)), "trailing bytes"},
		{"duplicate name", rawFile(`{`+f32("a", "[1]", 0, 4)+`,`+f32("a", "[1]", 4, 8)+`}`, seq(8)), `duplicate key "a"`},
		{"duplicate name via escape", rawFile(`{`+f32("a", "[1]", 0, 4)+`,`+f32(`\u0061`, "[1]", 4, 8)+`}`, seq(8)), `duplicate key "a"`},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), `duplicate key "__metadata__"`},
		{"duplicate metadata key", rawFile(`{"__metadata__":{"k":"1","k":"2"}}`, nil), `__metadata__ has duplicate key "k"`},
		{"metadata not object", rawFile(`{"__metadata__":["a"]}`, nil), "__metadata__ must be an object of string values, found an array"},
		{"metadata number value", rawFile(`{"__metadata__":{"epoch":3}}`, nil), `__metadata__ key "epoch" must have a string value, found number 3`},
		{"metadata nested value", rawFile(`{"__metadata__":{"a":{"b":"c"}}}`, nil), "must have a string value, found an object"},
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestMalformed(t *testing.T) {
	for _, tc := range malformedCases() {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.input)
			if err == nil {
				t.Fatalf("Parse succeeded with %d tensors, want error mentioning %q", len(f.Tensors), tc.want)
			}
			if !strings.HasPrefix(err.Error(), "safetensors: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error\n  %q\ndoes not mention\n  %q", err, tc.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Errorf("Parse error %T is not a *FormatError", err)
			}
			// Read must reject the same input; its wording may differ
			// only for trailing bytes, which it sees as a stream.
			_, rerr := Read(bytes.NewReader(tc.input))
			if rerr == nil {
				t.Fatalf("Read succeeded, Parse failed with %v", err)
			}
			if !strings.HasPrefix(rerr.Error(), "safetensors: ") {
				t.Errorf("Read error %q lacks the safetensors: prefix", rerr)
			}
			if !strings.Contains(tc.want, "trailing") && rerr.Error() != err.Error() {
				t.Errorf("Read error %q differs from Parse error %q", rerr, err)
			}
		})
	}
}

type acceptedCase struct {
	name    string
	input   []byte
	names   []string
	hasMeta bool
}

// acceptedCases lists unusual but valid inputs. They double as fuzz seeds.
func acceptedCases() []acceptedCase {
	return []acceptedCase{
		{"padded with spaces", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}      `, seq(2)), []string{"a"}, false},
		{"json whitespace inside", rawFile("{ \"a\" :\n{\"dtype\" : \"U8\",\t\"shape\":[ 2 ],\"data_offsets\":[0 ,2] } }", seq(2)), []string{"a"}, false},
		{"unknown entry field ignored", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"extra":{"x":[1,2]}}}`, seq(2)), []string{"a"}, false},
		{"null metadata", rawFile(`{"__metadata__":null}`, nil), []string{}, false},
		{"empty metadata", rawFile(`{"__metadata__":{}}`, nil), []string{}, true},
		{"metadata last", rawFile(`{"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]},"__metadata__":{"k":"v"}}`, seq(1)), []string{"a"}, true},
		{"out of order offsets", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, seq(2)), []string{"b", "a"}, false},
		{"zero-size tensors share offsets", rawFile(`{"z2":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"z1":{"dtype":"I64","shape":[3,0],"data_offsets":[0,0]},"z3":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}`, seq(1)), []string{"z1", "z2", "a", "z3"}, false},
		{"huge zero-size shape", rawFile(`{"z":{"dtype":"F64","shape":[0,9223372036854775807],"data_offsets":[0,0]}}`, nil), []string{"z"}, false},
	}
}

func TestAcceptedVariants(t *testing.T) {
	for _, tc := range acceptedCases() {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.input)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := f.Names(); !slices.Equal(got, tc.names) {
				t.Errorf("Names() = %q, want %q", got, tc.names)
			}
			if (f.Metadata != nil) != tc.hasMeta {
				t.Errorf("Metadata = %v, want present=%v", f.Metadata, tc.hasMeta)
			}
			if _, err := Read(bytes.NewReader(tc.input)); err != nil {
				t.Errorf("Read: %v", err)
			}
		})
	}
}

// TestTruncation cuts a valid file at every length and checks both readers
// reject every proper prefix, and reject any trailing byte.
func TestTruncation(t *testing.T) {
	b := encode(t, sampleTensors(), map[string]string{"k": "v"})
	for n := 0; n < len(b); n++ {
		if _, err := Parse(b[:n:n]); err == nil {
			t.Fatalf("Parse accepted a %d-byte prefix of a %d-byte file", n, len(b))
		}
		if _, err := Read(bytes.NewReader(b[:n])); err == nil {
			t.Fatalf("Read accepted a %d-byte prefix of a %d-byte file", n, len(b))
		}
	}
	long := append(slices.Clip(b), 0)
	for name, err := range map[string]error{
		"Parse": func() error { _, err := Parse(long); return err }(),
		"Read":  func() error { _, err := Read(bytes.NewReader(long)); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), "trailing bytes") {
			t.Errorf("%s with a trailing byte: err = %v, want trailing bytes error", name, err)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestReadIOError(t *testing.T) {
	_, err := Read(errReader{})
	if err == nil || !strings.HasPrefix(err.Error(), "safetensors: ") || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Read error = %v, want wrapped I/O error", err)
	}
	_, err = ReadFile(filepath.Join(t.TempDir(), "missing.safetensors"))
	if err == nil || !strings.Contains(err.Error(), "safetensors: read ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile(missing) error = %v", err)
	}
	p := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(p, []byte("not safetensors at all"), 0o644)
	_, err = ReadFile(p)
	if err == nil || !strings.HasPrefix(err.Error(), "safetensors: "+p+": ") {
		t.Errorf("ReadFile(bad) error = %v, want it to start with the path", err)
	}
}

func TestF16ToFloat32(t *testing.T) {
	cases := []struct {
		bits uint16
		want float64
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x3800, 0.5},
		{0x3555, 0.333251953125},
		{0x7bff, 65504},
		{0xfbff, -65504},
		{0x0400, math.Ldexp(1, -14)},       // smallest normal
		{0x03ff, math.Ldexp(1023, -24)},    // largest subnormal
		{0x0200, math.Ldexp(1, -15)},       // subnormal
		{0x0001, math.Ldexp(1, -24)},       // smallest subnormal
		{0x8001, -math.Ldexp(1, -24)},      // negative subnormal
		{0x0155, math.Ldexp(0x155, -24)},   // subnormal, several bits
		{0x7c00, math.Inf(1)},              // +inf
		{0xfc00, math.Inf(-1)},             // -inf
		{0x3bff, 1 - math.Ldexp(1, -11)},   // largest below one
		{0x3c01, 1 + math.Ldexp(1, -10)},   // smallest above one
		{0x5640, 100},                      // integer
		{0x2e66, 0.0999755859375},          // nearest to 0.1
		{0x4248, 3.140625},                 // nearest to pi
		{0x1400, math.Ldexp(1, -10)},       // small normal
		{0x0800, math.Ldexp(1, -13)},       // 2 * smallest normal
		{0x07ff, math.Ldexp(2047, -24)},    // normal just under 2^-13
		{0xc400, -4},                       //
		{0x7800, 32768},                    //
		{0x6400, 1024},                     //
		{0x03e8, math.Ldexp(1000, -24)},    // subnormal
		{0x8400, -math.Ldexp(1, -14)},      // negative smallest normal
		{0x0002, math.Ldexp(1, -23)},       //
		{0x7a00, 49152},                    //
		{0x5bff, math.Ldexp(2047, 7-10)},   // 255.875
		{0x57ff, math.Ldexp(2047, 6-10)},   // 127.9375
		{0x3e00, 1.5},                      //
		{0x4900, 10},                       //
		{0xe400, -1024},                    //
		{0x1000, math.Ldexp(1, -11)},       //
		{0x0c00, math.Ldexp(1, -12)},       //
		{0x0100, math.Ldexp(1, -16)},       //
		{0x0080, math.Ldexp(1, -17)},       //
		{0x0040, math.Ldexp(1, -18)},       //
		{0x0020, math.Ldexp(1, -19)},       //
		{0x0010, math.Ldexp(1, -20)},       //
		{0x0008, math.Ldexp(1, -21)},       //
		{0x0004, math.Ldexp(1, -22)},       //
		{0x3c00 | 0x8000, -1},              //
		{0x3555 | 0x8000, -0.333251953125}, //
		{0x7bfe, 65472},                    //
		{0x0401, math.Ldexp(1025, -24)},    //
		{0x03ff | 0x8000, -math.Ldexp(1023, -24)},
	}
	for _, tc := range cases {
		got := F16ToFloat32(tc.bits)
		if float64(got) != tc.want {
			t.Errorf("F16ToFloat32(%#04x) = %g, want %g", tc.bits, got, tc.want)
		}
	}
	if got := F16ToFloat32(0x8000); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("F16ToFloat32(0x8000) = %g, want -0", got)
	}
	for _, bits := range []uint16{0x7e00, 0x7c01, 0xfe00, 0x7fff, 0xfc01} {
		if got := F16ToFloat32(bits); !math.IsNaN(float64(got)) {
			t.Errorf("F16ToFloat32(%#04x) = %g, want NaN", bits, got)
		}
	}
	// Every non-NaN half survives a round trip through float32 exactly,
	// which checks both directions on every representable value.
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToFloat32(h)
		back := Float32ToF16Bits(f)
		if math.IsNaN(float64(f)) {
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %#04x came back as non-NaN %#04x", h, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("%#04x -> %g -> %#04x", h, f, back)
		}
	}
}

func TestFloat32ToF16(t *testing.T) {
	next := func(f float32) float32 { return math.Nextafter32(f, float32(math.Inf(1))) }
	prev := func(f float32) float32 { return math.Nextafter32(f, float32(math.Inf(-1))) }
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	cases := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.1, 0x2e66},
		{float32(math.Pi), 0x4248},
		{65504, 0x7bff},
		{prev(65520), 0x7bff},           // just below the halfway point to 65536
		{65520, 0x7c00},                 // tie between 65504 (odd) and 65536: even = inf
		{1e6, 0x7c00},                   // overflow
		{-1e6, 0xfc00},                  // negative overflow
		{math.MaxFloat32, 0x7c00},       //
		{float32(math.Inf(1)), 0x7c00},  //
		{float32(math.Inf(-1)), 0xfc00}, //
		{1 + p(-11), 0x3c00},            // tie: round to even mantissa 0
		{1 + 3*p(-11), 0x3c02},          // tie: round to even mantissa 2
		{next(1 + p(-11)), 0x3c01},      // just above the tie
		{prev(1 + 3*p(-11)), 0x3c01},    // just below the tie
		{p(-14), 0x0400},                // smallest normal
		{p(-24), 0x0001},                // smallest subnormal
		{-p(-24), 0x8001},               //
		{p(-25), 0x0000},                // tie between 0 and 1 ulp: even = 0
		{next(p(-25)), 0x0001},          // just above the tie
		{3 * p(-25), 0x0002},            // tie between 1 and 2: even = 2
		{5 * p(-25), 0x0002},            // tie between 2 and 3: even = 2
		{p(-26), 0x0000},                // underflow
		{float32(math.SmallestNonzeroFloat32), 0},
		{1023.5 * p(-24), 0x0400}, // tie between largest subnormal (odd) and smallest normal
		{1022.5 * p(-24), 0x03fe}, // tie: even = 1022
		{float32(math.Ldexp(1000, -24)), 0x03e8},
		{1e-5, 0x00a8},   // subnormal, inexact
		{-65504, 0xfbff}, //
		{2047, 0x67ff},   // exact
		{2049, 0x6800},   // tie between 2048 (even) and 2050
		{2051, 0x6802},   // tie between 2050 (odd) and 2052 (even)
	}
	for _, tc := range cases {
		if got := Float32ToF16Bits(tc.in); got != tc.want {
			t.Errorf("Float32ToF16Bits(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
	if got := Float32ToF16Bits(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("Float32ToF16Bits(NaN) = %#04x, want a NaN", got)
	}
	// Float32ToF16 is the little-endian byte form of Float32ToF16Bits.
	if got := Float32ToF16([]float32{1, -2}); !bytes.Equal(got, []byte{0x00, 0x3c, 0x00, 0xc0}) {
		t.Errorf("Float32ToF16([1 -2]) = % x", got)
	}
}

func TestBF16(t *testing.T) {
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	enc := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{float32(math.Pi), 0x4049},
		{1 + p(-8), 0x3f80},   // tie: even
		{1 + 3*p(-8), 0x3f82}, // tie: even
		{1 + p(-8) + p(-20), 0x3f81},
		{math.MaxFloat32, 0x7f80}, // rounds up to inf
		{float32(math.Inf(-1)), 0xff80},
		{float32(math.Copysign(0, -1)), 0x8000},
	}
	for _, tc := range enc {
		got := binary.LittleEndian.Uint16(Float32ToBF16([]float32{tc.in}))
		if got != tc.want {
			t.Errorf("Float32ToBF16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
	if got := binary.LittleEndian.Uint16(Float32ToBF16([]float32{float32(math.NaN())})); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("Float32ToBF16(NaN) = %#04x, want a NaN", got)
	}
	dec := []struct {
		bits uint16
		want float64
	}{
		{0x3f80, 1}, {0xc000, -2}, {0x4049, 3.140625}, {0x7f80, math.Inf(1)}, {0xff80, math.Inf(-1)},
		{0x0001, math.Ldexp(1, -133)}, // smallest subnormal
		{0x0080, math.Ldexp(1, -126)}, // smallest normal
		{0x7f7f, math.Ldexp(255, 127-7)},
	}
	for _, tc := range dec {
		x := Tensor{Name: "b", DType: BF16, Shape: []int{1}, Data: binary.LittleEndian.AppendUint16(nil, tc.bits)}
		got, err := x.Float32()
		if err != nil || float64(got[0]) != tc.want {
			t.Errorf("BF16 %#04x -> %v, %v; want %g", tc.bits, got, err, tc.want)
		}
	}
	x := Tensor{Name: "b", DType: BF16, Shape: []int{1}, Data: []byte{0xc1, 0x7f}}
	if got, _ := x.Float32(); !math.IsNaN(float64(got[0])) {
		t.Errorf("BF16 0x7fc1 -> %g, want NaN", got[0])
	}
}

func TestTensorFloat32(t *testing.T) {
	le := binary.LittleEndian
	cases := []struct {
		dt   DType
		data []byte
		want []float64
	}{
		{F32, Float32Bytes([]float32{1.5, -0, 1e-45}), []float64{1.5, 0, float64(float32(1e-45))}},
		{F16, []byte{0x00, 0x3c, 0x01, 0x00, 0x00, 0x7c, 0xff, 0x7b}, []float64{1, math.Ldexp(1, -24), math.Inf(1), 65504}},
		{BF16, []byte{0x80, 0x3f, 0x00, 0xc0}, []float64{1, -2}},
		{F64, le.AppendUint64(le.AppendUint64(nil, math.Float64bits(0.25)), math.Float64bits(1e300)), []float64{0.25, math.Inf(1)}},
		{F8E4M3, []byte{0x38, 0x01, 0x7e, 0xb8, 0x08}, []float64{1, math.Ldexp(1, -9), 448, -1, math.Ldexp(1, -6)}},
		{F8E5M2, []byte{0x3c, 0x01, 0x7c, 0xc0}, []float64{1, math.Ldexp(1, -16), math.Inf(1), -2}},
		{BOOL, []byte{0, 1, 2}, []float64{0, 1, 1}},
		{U8, []byte{0, 255}, []float64{0, 255}},
		{I8, []byte{0x80, 0x7f, 0xff}, []float64{-128, 127, -1}},
		{I16, le.AppendUint16(le.AppendUint16(nil, 0x8000), 300), []float64{-32768, 300}},
		{U16, le.AppendUint16(nil, 65535), []float64{65535}},
		{I32, le.AppendUint32(nil, 0xfffffffb), []float64{-5}},
		{U32, le.AppendUint32(nil, 16777217), []float64{16777216}}, // nearest float32
		{I64, le.AppendUint64(nil, 0xfffffffffffffffe), []float64{-2}},
		{U64, le.AppendUint64(nil, 1<<40), []float64{1 << 40}},
		{I64, nil, []float64{}},
	}
	for _, tc := range cases {
		x := Tensor{Name: "x", DType: tc.dt, Data: tc.data}
		got, err := x.Float32()
		if err != nil {
			t.Errorf("%s: %v", tc.dt, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %d values, want %d", tc.dt, len(got), len(tc.want))
			continue
		}
		for i := range got {
			if float64(got[i]) != tc.want[i] {
				t.Errorf("%s[%d] = %g, want %g", tc.dt, i, got[i], tc.want[i])
			}
		}
	}
	nan := Tensor{Name: "n", DType: F8E4M3, Data: []byte{0x7f, 0xff}}
	if got, _ := nan.Float32(); !math.IsNaN(float64(got[0])) || !math.IsNaN(float64(got[1])) {
		t.Errorf("F8_E4M3 NaN patterns -> %v", got)
	}
	for _, bad := range []Tensor{
		{Name: "odd", DType: F32, Data: seq(5)},
		{Name: "unk", DType: "Q4", Data: seq(4)},
	} {
		if _, err := bad.Float32(); err == nil || !strings.Contains(err.Error(), `tensor "`+bad.Name+`"`) {
			t.Errorf("Float32 on %q: err = %v, want an error naming the tensor", bad.Name, err)
		}
	}
	// Float32 allocates: the result does not alias Data.
	src := Tensor{Name: "f", DType: F32, Data: Float32Bytes([]float32{7})}
	got, _ := src.Float32()
	got[0] = 8
	if v, _ := src.Float32(); v[0] != 7 {
		t.Errorf("Float32 result aliases Data")
	}
}

func TestDTypeSize(t *testing.T) {
	want := map[DType]int{BOOL: 1, U8: 1, I8: 1, F8E5M2: 1, F8E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
		I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8, "": 0, "F33": 0, "f32": 0}
	for d, n := range want {
		if d.Size() != n || d.Valid() != (n > 0) {
			t.Errorf("%q: Size() = %d, Valid() = %v; want %d", d, d.Size(), d.Valid(), n)
		}
	}
	x := Tensor{Shape: []int{2, 3, 4}}
	if x.NumElements() != 24 {
		t.Errorf("NumElements = %d", x.NumElements())
	}
	for _, s := range [][]int{{}, {0, 5}, {-1}, {1 << 62, 4}} {
		x := Tensor{Shape: s}
		want := map[int]int{0: 1, 1: 0, 2: -1, 3: -1}[slices.IndexFunc([][]int{{}, {0, 5}, {-1}, {1 << 62, 4}}, func(v []int) bool { return slices.Equal(v, s) })]
		if got := x.NumElements(); got != want {
			t.Errorf("NumElements(%v) = %d, want %d", s, got, want)
		}
	}
}

// tempLeftovers lists files in dir that look like WriteFile temporaries.
func tempLeftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	v1 := []Tensor{{Name: "w", DType: F32, Shape: []int{2}, Data: Float32Bytes([]float32{1, 2})}}
	if err := WriteFile(path, v1, map[string]string{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path)
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644", st.Mode().Perm())
	}
	assertOldIntact := func(t *testing.T) {
		t.Helper()
		if cur, _ := os.ReadFile(path); !bytes.Equal(cur, old) {
			t.Errorf("existing file was modified by a failed WriteFile")
		}
		if left := tempLeftovers(t, dir); len(left) > 0 {
			t.Errorf("temporary files left behind: %q", left)
		}
	}

	t.Run("invalid tensor leaves old file", func(t *testing.T) {
		bad := []Tensor{{Name: "w", DType: F32, Shape: []int{3}, Data: seq(4)}}
		err := WriteFile(path, bad, nil)
		if err == nil || !strings.Contains(err.Error(), `safetensors: `+path+`: tensor "w": data is 4 bytes`) {
			t.Errorf("err = %v", err)
		}
		assertOldIntact(t)
	})
	t.Run("missing directory", func(t *testing.T) {
		p := filepath.Join(dir, "no", "such", "dir", "x.safetensors")
		err := WriteFile(p, v1, nil)
		if err == nil || !strings.Contains(err.Error(), "safetensors: write "+p+": directory does not exist") ||
			!strings.Contains(err.Error(), "choose another output path") {
			t.Errorf("err = %v", err)
		}
		assertOldIntact(t)
	})
	t.Run("parent is a file", func(t *testing.T) {
		p := filepath.Join(path, "x.safetensors")
		err := WriteFile(p, v1, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "safetensors: write "+p+": ") {
			t.Errorf("err = %v", err)
		}
		assertOldIntact(t)
	})
	t.Run("path is a directory", func(t *testing.T) {
		err := WriteFile(dir, v1, nil)
		if err == nil || !strings.Contains(err.Error(), "path is a directory") {
			t.Errorf("err = %v", err)
		}
		assertOldIntact(t)
	})
	t.Run("unwritable directory", func(t *testing.T) {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o755)
		if probe, err := os.CreateTemp(dir, "probe"); err == nil {
			probe.Close()
			os.Remove(probe.Name())
			// Running as root: permission bits are not enforced. Fall back
			// to a directory root cannot write either, if there is one.
			p := "/sys/diffuse-safetensors-test.safetensors"
			probe, err := os.CreateTemp("/sys", "probe")
			if err == nil {
				probe.Close()
				os.Remove(probe.Name())
			}
			if !errors.Is(err, os.ErrPermission) {
				t.Skip("directory permissions are not enforced for this user (running as root?) and /sys is not a read-only stand-in; cannot test an unwritable directory")
			}
			err = WriteFile(p, v1, nil)
			if err == nil || !strings.Contains(err.Error(), "safetensors: write "+p+": directory not writable") ||
				!strings.Contains(err.Error(), "choose another output path") {
				t.Errorf("err = %v", err)
			}
			assertOldIntact(t)
			return
		}
		err := WriteFile(path, []Tensor{{Name: "new", DType: U8, Shape: []int{}, Data: seq(1)}}, nil)
		if err == nil || !strings.Contains(err.Error(), "safetensors: write "+path+": directory not writable") ||
			!strings.Contains(err.Error(), "choose another output path") {
			t.Errorf("err = %v", err)
		}
		assertOldIntact(t)
	})
	t.Run("replace keeps mode", func(t *testing.T) {
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		v2 := []Tensor{{Name: "w2", DType: F16, Shape: []int{1}, Data: Float32ToF16([]float32{3})}}
		if err := WriteFile(path, v2, nil); err != nil {
			t.Fatal(err)
		}
		f, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sameTensors(t, f.Tensors, v2)
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
			t.Errorf("replaced file mode %v, want 0600 kept", st.Mode().Perm())
		}
		if left := tempLeftovers(t, dir); len(left) > 0 {
			t.Errorf("temporary files left behind: %q", left)
		}
	})
}

// refPath locates the reference UNet-S checkpoint: $DIFFUSE_UNETS_REF, else
// ../shared/bench/ref/unet_s.safetensors relative to the repository root
// (the test runs in the package directory, one level below the root).
func refPath() string {
	if p := os.Getenv("DIFFUSE_UNETS_REF"); p != "" {
		return p
	}
	return filepath.Join("..", "..", "shared", "bench", "ref", "unet_s.safetensors")
}

func TestReferenceFile(t *testing.T) {
	p := refPath()
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		t.Skipf("reference file %s not found; set DIFFUSE_UNETS_REF to the path of unet_s.safetensors to run this test", p)
	}
	f, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{
		"res1.conv1.weight": {32, 32, 3, 3},
		"check.x":           {4, 1, 28, 28},
	}
	for name, shape := range want {
		x, ok := f.Get(name)
		if !ok {
			t.Errorf("tensor %q missing; file has %d tensors", name, len(f.Tensors))
			continue
		}
		if !slices.Equal(x.Shape, shape) || x.DType != F32 {
			t.Errorf("tensor %q: %s %v, want F32 %v", name, x.DType, x.Shape, shape)
		}
		v, err := x.Float32()
		if err != nil || len(v) != x.NumElements() {
			t.Errorf("tensor %q: Float32 gave %d values, %v", name, len(v), err)
		}
		for i, e := range v {
			if math.IsNaN(float64(e)) || math.IsInf(float64(e), 0) {
				t.Errorf("tensor %q[%d] = %g", name, i, e)
				break
			}
		}
	}
	// Re-encoding the reference file and parsing it back is lossless.
	var buf bytes.Buffer
	if err := Write(&buf, f.Tensors, f.Metadata); err != nil {
		t.Fatal(err)
	}
	g, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, g.Tensors, f.Tensors)
	if !reflect.DeepEqual(g.Metadata, f.Metadata) {
		t.Errorf("metadata changed: %q -> %q", f.Metadata, g.Metadata)
	}
	// Read (streaming) agrees with ReadFile.
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h, err := Read(fh)
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, h.Tensors, f.Tensors)
}

// FuzzParse checks that Parse never panics, that Read agrees with it, and
// that any accepted file survives a Write/Parse round trip unchanged.
func FuzzParse(f *testing.F) {
	all := sampleTensors()
	f.Add(encode(f, nil, nil))
	f.Add(encode(f, all, nil))
	f.Add(encode(f, all[:3], map[string]string{"format": "pt", "k": "v"}))
	f.Add(encode(f, all[5:6], nil))
	f.Add(rawFile(`{"z2":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, seq(1)))
	f.Add(rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"b":{"dtype":"BF16","shape":[],"data_offsets":[2,4]},"c":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}   `, seq(4)))
	for _, tc := range acceptedCases() {
		f.Add(tc.input)
	}
	for _, tc := range malformedCases() {
		f.Add(tc.input)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		rfile, rerr := Read(bytes.NewReader(b))
		if (err == nil) != (rerr == nil) {
			t.Fatalf("Parse error %v but Read error %v", err, rerr)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "safetensors: ") || !strings.HasPrefix(rerr.Error(), "safetensors: ") {
				t.Fatalf("errors lack the safetensors: prefix: %q, %q", err, rerr)
			}
			return
		}
		sameTensors(t, rfile.Tensors, file.Tensors)
		for i := range file.Tensors {
			x := &file.Tensors[i]
			if n := x.NumElements(); n < 0 || n*x.DType.Size() != len(x.Data) {
				t.Fatalf("tensor %q: %d bytes for shape %v of %s", x.Name, len(x.Data), x.Shape, x.DType)
			}
			if v, err := x.Float32(); err != nil || len(v) != x.NumElements() {
				t.Fatalf("tensor %q: Float32 gave %d values, %v", x.Name, len(v), err)
			}
		}
		var buf bytes.Buffer
		if err := Write(&buf, file.Tensors, file.Metadata); err != nil {
			t.Fatalf("Write of a parsed file failed: %v", err)
		}
		again, err := Parse(buf.Bytes())
		if err != nil {
			t.Fatalf("re-parse failed: %v", err)
		}
		sameTensors(t, again.Tensors, file.Tensors)
		if len(file.Metadata) != len(again.Metadata) || (len(file.Metadata) > 0 && !reflect.DeepEqual(file.Metadata, again.Metadata)) {
			t.Fatalf("metadata %q became %q", file.Metadata, again.Metadata)
		}
		// Writing is canonical: encoding the re-parsed file gives the same bytes.
		var buf2 bytes.Buffer
		if err := Write(&buf2, again.Tensors, again.Metadata); err != nil || !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
			t.Fatalf("second Write differs (err %v)", err)
		}
	})
}
