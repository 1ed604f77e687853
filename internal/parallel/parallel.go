// Package parallel runs loops across all cores with one shared pool of workers.
//
// Kernels call For to split an index range into chunks; the pool is sized to
// GOMAXPROCS at first use. Nested calls run serially in the calling goroutine,
// so a kernel that is already parallel over the batch can call a parallel GEMM
// without oversubscribing the cores.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

type job struct {
	fn     func(worker, lo, hi int)
	n      int
	grain  int
	st     *state
	worker int
}

// state is the shared counter of one For call, pooled so For allocates
// nothing in steady state.
type state struct {
	next atomic.Int64
	wg   sync.WaitGroup
}

var states = sync.Pool{New: func() any { return new(state) }}

var (
	once    sync.Once
	workers int
	jobs    chan job
	busy    atomic.Int32 // >0 while a parallel For is running
)

func start() {
	workers = runtime.GOMAXPROCS(0)
	if workers < 1 {
		workers = 1
	}
	jobs = make(chan job, workers)
	for i := 1; i < workers; i++ {
		go func() {
			for j := range jobs {
				run(j)
				j.st.wg.Done()
			}
		}()
	}
}

func run(j job) {
	for {
		lo := int(j.st.next.Add(int64(j.grain))) - j.grain
		if lo >= j.n {
			return
		}
		hi := lo + j.grain
		if hi > j.n {
			hi = j.n
		}
		j.fn(j.worker, lo, hi)
	}
}

// Workers returns the number of workers For may use; worker ids passed to fn
// are in [0, Workers()).
func Workers() int {
	once.Do(start)
	return workers
}

// For calls fn(worker, lo, hi) over disjoint chunks covering [0, n), each at
// most grain long (grain < 1 means 1). Chunks run concurrently on up to
// Workers() goroutines; worker identifies the goroutine, so fn may index
// per-worker scratch buffers with it. For returns when all chunks are done.
// A For called while another For is running (from inside fn) runs serially
// with worker id 0 of its own, so scratch owners must not assume nesting.
func For(n, grain int, fn func(worker, lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	once.Do(start)
	if workers == 1 || n <= grain || !busy.CompareAndSwap(0, 1) {
		fn(0, 0, n)
		return
	}
	defer busy.Store(0)
	st := states.Get().(*state)
	st.next.Store(0)
	k := (n + grain - 1) / grain
	if k > workers {
		k = workers
	}
	st.wg.Add(k - 1)
	for w := 1; w < k; w++ {
		jobs <- job{fn: fn, n: n, grain: grain, st: st, worker: w}
	}
	run(job{fn: fn, n: n, grain: grain, st: st, worker: 0})
	st.wg.Wait()
	states.Put(st)
}

// Nested reports whether a parallel For is currently running; kernels use it
// to pick serial scratch.
func Nested() bool { return busy.Load() != 0 }
