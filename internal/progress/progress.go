// Package progress draws a progress bar for long work (training steps,
// sampling steps, data loading):
//
//	train  37% |███████▍            | 370/1000 [00:12<00:20, 30.1 it/s] loss=0.0312
//
// On a terminal the line is redrawn in place with '\r', at most 10 times a
// second. When the output is not a terminal (a log file, a pipe, a buffer)
// a plain line is printed at every 5% instead, so logs stay readable. The
// rate and the time left come from an exponential moving average of the
// recent rate.
package progress

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Field is an extra value shown after the bar as Key=Value, such as the
// current loss.
type Field struct {
	Key, Value string
}

// Float returns the Field key=v with v printed to 4 significant digits.
func Float(key string, v float64) Field {
	return Field{key, strconv.FormatFloat(v, 'g', 4, 64)}
}

const (
	barWidth     = 20                     // cells of the bar
	redrawEvery  = 100 * time.Millisecond // least time between terminal redraws
	sampleEvery  = 100 * time.Millisecond // least time between rate samples
	emaAlpha     = 0.3                    // weight of the newest rate sample
	logPercent   = 5                      // a log line every this many percent
	logUnknownIn = 10 * time.Second       // a log line this often without a total
)

// Bar is a progress bar writing to one io.Writer. Its methods may be called
// from several goroutines. A nil *Bar ignores every call, so optional
// progress needs no checks.
type Bar struct {
	mu     sync.Mutex
	w      io.Writer
	total  int
	label  string
	tty    bool
	now    func() time.Time
	fields []Field

	start      time.Time
	done       int
	rate       float64 // moving average, items per second; 0 until sampled
	sampleT    time.Time
	sampleDone int
	base       int // items done before this bar started (Resume), excluded from rates
	lastDraw   time.Time
	drawn      bool
	lastLog    int // last 5% step logged (non-terminal output)
	lastLogT   time.Time
	width      int // runes of the last terminal line, to blank leftovers
	finished   bool
}

// New returns a bar for total items (total ≤ 0: unknown, shows counts and
// rate only) labelled label, writing to w. The clock starts now. Output is
// redrawn in place when w is an *os.File on a terminal (a character
// device) and logged line by line otherwise. A nil w gives a nil Bar,
// whose methods do nothing.
func New(w io.Writer, total int, label string) *Bar {
	if w == nil {
		return nil // a nil *Bar is a no-op: no output wanted
	}
	b := &Bar{w: w, total: total, label: label, now: time.Now}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.tty = true
		}
	}
	b.start = b.now()
	b.sampleT, b.lastLogT = b.start, b.start
	return b
}

// SetClock replaces the clock (time.Now) with now, for tests, and restarts
// the bar's timing from now().
func (b *Bar) SetClock(now func() time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.now = now
	b.start = now()
	b.sampleT, b.lastLogT = b.start, b.start
}

// Set records that done items are complete (clamped to [0, total] when the
// total is known) and, when fields are given, replaces the extra fields;
// then redraws or logs the bar if it is time to.
func (b *Bar) Set(done int, fields ...Field) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set(done, fields)
}

// Add records n more completed items, like Set(done+n, fields...).
func (b *Bar) Add(n int, fields ...Field) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set(b.done+n, fields)
}

// Resume marks done items as finished before the bar started (a resumed
// run): they count towards the fraction but not towards the rate or ETA.
func (b *Bar) Resume(done int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.base, b.done, b.sampleDone = done, done, done
}

func (b *Bar) set(done int, fields []Field) {
	if b.finished {
		return
	}
	done = max(done, 0)
	if b.total > 0 {
		done = min(done, b.total)
	}
	if len(fields) > 0 {
		b.fields = append(b.fields[:0], fields...)
	}
	b.done = done
	now := b.now()
	if dt := now.Sub(b.sampleT); dt >= sampleEvery && done > b.sampleDone {
		inst := float64(done-b.sampleDone) / dt.Seconds()
		if b.rate == 0 {
			b.rate = inst
		} else {
			b.rate = emaAlpha*inst + (1-emaAlpha)*b.rate
		}
		b.sampleT, b.sampleDone = now, done
	} else if done < b.sampleDone { // went backwards: start sampling afresh
		b.sampleT, b.sampleDone = now, done
	}

	if b.tty {
		if !b.drawn || now.Sub(b.lastDraw) >= redrawEvery || done == b.total {
			b.redraw(b.line(now, false), false)
			b.lastDraw, b.drawn = now, true
		}
		return
	}
	if b.total > 0 {
		step := done * 100 / b.total / logPercent * logPercent
		if step > b.lastLog && step < 100 { // 100% is Finish's line
			b.lastLog = step
			fmt.Fprintln(b.w, b.line(now, false))
		}
	} else if now.Sub(b.lastLogT) >= logUnknownIn {
		b.lastLogT = now
		fmt.Fprintln(b.w, b.line(now, false))
	}
}

// Finish prints the final line, with the total time and the average rate,
// and ends it with a newline. Later calls to the bar do nothing.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	l := b.line(b.now(), true)
	if b.tty {
		b.redraw(l, true)
	} else {
		fmt.Fprintln(b.w, l)
	}
}

// redraw rewrites the terminal line, blanking what is left of a longer one.
func (b *Bar) redraw(l string, final bool) {
	n := len([]rune(l))
	pad := ""
	if b.width > n {
		pad = strings.Repeat(" ", b.width-n)
	}
	b.width = n
	end := ""
	if final {
		end = "\n"
	}
	io.WriteString(b.w, "\r"+l+pad+end)
}

// line formats the bar at time now; final lines show the total time and
// the average rate instead of the time left and the recent rate.
func (b *Bar) line(now time.Time, final bool) string {
	var s strings.Builder
	elapsed := now.Sub(b.start)
	s.WriteString(b.label)
	if b.total > 0 {
		frac := float64(b.done) / float64(b.total)
		fmt.Fprintf(&s, " %3d%% |%s| %d/%d", int(frac*100), bar(frac, barWidth), b.done, b.total)
	} else {
		fmt.Fprintf(&s, " %d", b.done)
	}
	rate := b.rate
	if final && elapsed > 0 {
		rate = float64(b.done-b.base) / elapsed.Seconds()
	}
	s.WriteString(" [" + clock(elapsed))
	switch {
	case final:
		s.WriteString(" total")
	case b.total > 0 && rate > 0:
		s.WriteString("<" + clock(time.Duration(float64(b.total-b.done)/rate*float64(time.Second))))
	case b.total > 0:
		s.WriteString("<?")
	}
	s.WriteString(", " + rateString(rate) + "]")
	for _, f := range b.fields {
		s.WriteString(" " + f.Key + "=" + f.Value)
	}
	return s.String()
}

// bar draws frac (0–1) as width cells of full and eighth blocks.
func bar(frac float64, width int) string {
	const eighths = " ▏▎▍▌▋▊▉"
	parts := []rune(eighths)
	n := int(frac * float64(width) * 8)
	n = min(max(n, 0), width*8)
	full, rest := n/8, n%8
	var s strings.Builder
	s.WriteString(strings.Repeat("█", full))
	if full < width {
		s.WriteRune(parts[rest])
		s.WriteString(strings.Repeat(" ", width-full-1))
	}
	return s.String()
}

// clock formats d as MM:SS, or H:MM:SS from an hour on.
func clock(d time.Duration) string {
	t := int(d.Round(time.Second) / time.Second)
	if t < 0 {
		t = 0
	}
	if t >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", t/3600, t/60%60, t%60)
	}
	return fmt.Sprintf("%02d:%02d", t/60, t%60)
}

// rateString shows a rate as items per second, or seconds per item when
// slower than one a second; "? it/s" before the first sample.
func rateString(r float64) string {
	switch {
	case r <= 0:
		return "? it/s"
	case r < 1:
		return strconv.FormatFloat(1/r, 'f', 2, 64) + " s/it"
	}
	return strconv.FormatFloat(r, 'f', 1, 64) + " it/s"
}
