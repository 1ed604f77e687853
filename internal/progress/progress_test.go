package progress

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTest(total int, tty bool) (*Bar, *bytes.Buffer, *fakeClock) {
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := New(&buf, total, "train")
	b.SetClock(clk.now)
	b.tty = tty
	return b, &buf, clk
}

func TestLogLines(t *testing.T) {
	b, buf, clk := newTest(100, false)
	if b.tty {
		t.Fatal("a bytes.Buffer is not a terminal")
	}
	for i := 1; i <= 100; i++ {
		clk.advance(time.Second)
		b.Set(i, Float("loss", 1/float64(i)))
	}
	b.Finish()
	b.Finish() // idempotent
	b.Set(5)   // ignored after Finish
	out := buf.String()
	if strings.Contains(out, "\r") {
		t.Fatal("log output holds \\r")
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 20 { // 5%, 10%, ..., 95%, and the final line
		t.Fatalf("%d lines, want 20:\n%s", len(lines), out)
	}
	want := "train  50% |██████████          | 50/100 [00:50<00:50, 1.0 it/s] loss=0.02"
	if lines[9] != want {
		t.Fatalf("line 10:\n got %q\nwant %q", lines[9], want)
	}
	final := "train 100% |████████████████████| 100/100 [01:40 total, 1.0 it/s] loss=0.01"
	if lines[19] != final {
		t.Fatalf("final line:\n got %q\nwant %q", lines[19], final)
	}
}

func TestTerminalRedraws(t *testing.T) {
	b, buf, clk := newTest(1000, true)
	for i := 1; i <= 1000; i++ {
		clk.advance(10 * time.Millisecond) // 100 it/s: 10 s in all
		b.Add(1)
	}
	draws := strings.Count(buf.String(), "\r")
	// About 10 redraws a second for 10 s, plus the first and the last.
	if draws < 95 || draws > 105 {
		t.Fatalf("%d redraws in 10 s, want about 100", draws)
	}
	if strings.Contains(buf.String(), "\n") {
		t.Fatal("newline before Finish")
	}
	b.Finish()
	out := buf.String()
	last := out[strings.LastIndex(out, "\r")+1:]
	if last != "train 100% |████████████████████| 1000/1000 [00:10 total, 100.0 it/s]\n" {
		t.Fatalf("final %q", last)
	}
}

func TestShorterLineIsBlanked(t *testing.T) {
	b, buf, clk := newTest(10, true)
	b.Set(1, Field{"loss", "0.123456789"})
	clk.advance(time.Second)
	b.Set(2, Field{"loss", "1"})
	parts := strings.Split(buf.String(), "\r")
	if len([]rune(parts[1])) != len([]rune(parts[2])) {
		t.Fatalf("second line not padded to the first's width: %q then %q", parts[1], parts[2])
	}
}

func TestRateEMA(t *testing.T) {
	b, _, clk := newTest(10000, false)
	done := 0
	step := func(n int, per time.Duration) {
		for i := 0; i < n; i++ {
			clk.advance(per)
			done++
			b.Set(done)
		}
	}
	step(200, 100*time.Millisecond) // 10 it/s, one sample each
	if r := b.rate; r < 9.99 || r > 10.01 {
		t.Fatalf("rate %v, want 10", r)
	}
	step(20, 50*time.Millisecond) // 20 it/s: the average moves towards it
	if r := b.rate; r < 19 || r > 20.01 {
		t.Fatalf("rate %v after the speed-up, want close to 20", r)
	}
	l := b.line(clk.now(), false)
	// 9780 left at about 20 it/s is about 8 minutes.
	if !strings.Contains(l, "<08:") {
		t.Fatalf("ETA in %q, want about 08:09", l)
	}
}

func TestFormats(t *testing.T) {
	if got := bar(0.37, 12); got != "████▍       " {
		t.Fatalf("bar(0.37) = %q", got)
	}
	if got := bar(0, 4); got != "    " || bar(1, 4) != "████" {
		t.Fatalf("bar ends %q %q", got, bar(1, 4))
	}
	if clock(3725*time.Second) != "1:02:05" || clock(65*time.Second) != "01:05" {
		t.Fatal(clock(3725*time.Second), clock(65*time.Second))
	}
	if rateString(0.5) != "2.00 s/it" || rateString(30.14) != "30.1 it/s" || rateString(0) != "? it/s" {
		t.Fatal(rateString(0.5), rateString(30.14))
	}
	// Unknown total: counts and rate only, a log line every 10 s.
	b, buf, clk := newTest(0, false)
	for i := 1; i <= 30; i++ {
		clk.advance(time.Second)
		b.Set(i)
	}
	if got := strings.Count(buf.String(), "\n"); got != 3 {
		t.Fatalf("%d lines for 30 s with no total, want 3:\n%s", got, buf.String())
	}
	if !strings.HasPrefix(buf.String(), "train 10 [00:10, 1.0 it/s]\n") {
		t.Fatalf("%q", buf.String())
	}
	// Before the first rate sample the ETA is unknown.
	b, _, _ = newTest(5, false)
	if l := b.line(b.now(), false); l != "train   0% |                    | 0/5 [00:00<?, ? it/s]" {
		t.Fatalf("%q", l)
	}
	var nilBar *Bar
	nilBar.Set(1)
	nilBar.Add(1)
	nilBar.Finish()
}

func TestTerminalDetection(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if New(f, 1, "x").tty {
		t.Fatal("a regular file counted as a terminal")
	}
}

func TestResumeExcludesEarlierItemsFromRate(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	b := New(&buf, 100, "train")
	b.SetClock(func() time.Time { return now })
	b.Resume(50)
	now = now.Add(10 * time.Second)
	b.Set(60)
	b.Finish()
	if out := buf.String(); !strings.Contains(out, "1.0 it/s") {
		t.Fatalf("rate should count only the 10 items done after resuming:\n%s", out)
	}
}
