package parallel

import (
	"sync/atomic"
	"testing"
)

func TestForCoversRangeOnce(t *testing.T) {
	for _, c := range []struct{ n, grain int }{{0, 1}, {1, 1}, {7, 2}, {1000, 1}, {1000, 64}, {5, 100}} {
		hits := make([]atomic.Int32, c.n)
		For(c.n, c.grain, func(w, lo, hi int) {
			if w < 0 || w >= Workers() {
				t.Errorf("worker id %d out of range", w)
			}
			if hi-lo > max(c.grain, 1) {
				t.Errorf("chunk [%d,%d) longer than grain %d", lo, hi, c.grain)
			}
			for i := lo; i < hi; i++ {
				hits[i].Add(1)
			}
		})
		for i := range hits {
			if hits[i].Load() != 1 {
				t.Fatalf("n=%d grain=%d: index %d visited %d times", c.n, c.grain, i, hits[i].Load())
			}
		}
	}
}

func TestNestedForRunsSerially(t *testing.T) {
	var total atomic.Int64
	For(8, 1, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			For(100, 10, func(w, a, b int) { total.Add(int64(b - a)) })
		}
	})
	if total.Load() != 800 {
		t.Fatalf("nested loops covered %d, want 800", total.Load())
	}
}

var sink atomic.Int64

func work(_, lo, hi int) { sink.Add(int64(hi - lo)) }

func TestForDoesNotAllocate(t *testing.T) {
	For(1<<12, 64, work)
	if a := testing.AllocsPerRun(50, func() { For(1<<12, 64, work) }); a > 0 {
		t.Errorf("For allocates %v times per call", a)
	}
}
