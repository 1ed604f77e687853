package tensor

// Arena hands out tensors whose storage is recycled: Release returns one
// buffer for reuse, Reset returns all of them. A training loop that builds
// the same graph every step therefore allocates nothing after the first
// step. An Arena is not safe for concurrent use.
type Arena struct {
	be   Backend
	free map[int][]*Storage
	out  []*Storage
}

// NewArena returns an empty arena on backend be.
func NewArena(be Backend) *Arena {
	return &Arena{be: be, free: map[int][]*Storage{}}
}

// Backend returns the arena's backend.
func (a *Arena) Backend() Backend { return a.be }

// Get returns a tensor of the given shape with unspecified contents.
func (a *Arena) Get(shape ...int) *Tensor {
	if err := CheckShape(shape); err != nil {
		panic(shapeErr("Arena.Get", "%v", err))
	}
	n := Numel(shape)
	var st *Storage
	if l := a.free[n]; len(l) > 0 {
		st = l[len(l)-1]
		a.free[n] = l[:len(l)-1]
	} else {
		st = a.be.Alloc(n)
	}
	a.out = append(a.out, st)
	return &Tensor{shape: append([]int(nil), shape...), st: st}
}

// Zeros returns a zero-filled tensor of the given shape.
func (a *Arena) Zeros(shape ...int) *Tensor {
	t := a.Get(shape...)
	a.be.Fill(t, 0)
	return t
}

// Release returns t's storage to the arena now. t (and every view of it)
// must not be used afterwards. Tensors not from this arena are ignored.
func (a *Arena) Release(t *Tensor) {
	if t == nil {
		return
	}
	for i := len(a.out) - 1; i >= 0; i-- {
		if a.out[i] == t.st {
			a.out[i] = a.out[len(a.out)-1]
			a.out = a.out[:len(a.out)-1]
			a.free[t.st.n] = append(a.free[t.st.n], t.st)
			return
		}
	}
}

// Reset returns every outstanding buffer to the arena.
func (a *Arena) Reset() {
	for _, st := range a.out {
		a.free[st.n] = append(a.free[st.n], st)
	}
	a.out = a.out[:0]
}

// Bytes reports the float32 storage the arena holds (outstanding and free).
func (a *Arena) Bytes() int64 {
	var n int64
	for _, st := range a.out {
		n += int64(st.n)
	}
	for _, l := range a.free {
		for _, st := range l {
			n += int64(st.n)
		}
	}
	return 4 * n
}
