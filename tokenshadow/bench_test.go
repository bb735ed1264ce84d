package tokenshadow

import (
	"errors"
	"testing"
)

// BenchmarkVerify measures each kind of answer on a warm Store (file parsed, table reused): a
// cached acceptance, and the refusals that must cost the same (see Timing in the package
// comment): an unknown id, a known id not verified since the last change, a cached one. The
// bench/ harness has the same rows ("verify, refused: ...") in its table.
func BenchmarkVerify(b *testing.B) {
	const wrong = "00000000-0000-0000-0000-000000000000"
	s := newStore(b)
	const used, idle = "alice@pbs!used", "alice@pbs!idle"
	if _, err := s.Generate(idle); err != nil {
		b.Fatal(err)
	}
	secret, err := s.Generate(used)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Verify(used, secret); err != nil { // cached from here on
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, id, secret string
		forget           bool // drop the snapshot (not the parsed table) before each Verify
		want             error
	}{
		{name: "cached id, right secret", id: used, secret: secret},
		{name: "uncached id, right secret", id: used, secret: secret, forget: true},
		{name: "refused: cached id, wrong secret", id: used, secret: wrong, want: ErrWrongSecret},
		{name: "refused: uncached id, wrong secret", id: idle, secret: wrong, want: ErrWrongSecret},
		{name: "refused: unknown id", id: "alice@pbs!nosuch", secret: wrong, want: ErrNoToken},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bc.forget {
					s.snap.Store(nil)
				}
				if err := s.Verify(bc.id, bc.secret); !errors.Is(err, bc.want) || (bc.want == nil && err != nil) {
					b.Fatalf("Verify(%s) = %v; want %v", bc.id, err, bc.want)
				}
			}
		})
	}
}
