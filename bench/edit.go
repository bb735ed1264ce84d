package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"gatehouse/tokenshadow"
)

// measureEdit measures how long a manual edit of token.shadow (an editor's write of a new file
// renamed over the old one, no generation bump) takes to be noticed by a Store running Watch
// at its default interval: the time from the rename to the first refused Verify of the old
// secret, which the cache accepts until Watch drops it; the new secret must then be accepted.
// (Presenting the new secret first would notice the edit at once: a secret that differs from
// the cached one is checked on the slow path, which sees the changed file. Waiting for the old
// one to be refused measures the poll, the bound when nobody uses the new secret yet.) It
// returns the latency of each of runs edits.
func measureEdit(runs int) ([]time.Duration, error) {
	f, err := newFixture(1)
	if err != nil {
		return nil, err
	}
	defer f.close()
	hashes, secrets, err := scratchHashes(runs)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.store.Watch(ctx, 0, nil)
	id, path := f.ids[0], f.store.Path()
	var out []time.Duration
	for i := range runs {
		if err := f.store.Verify(id, f.secret); err != nil { // cached before the edit
			return nil, err
		}
		if _, _, err := editShadow(path, id, hashes[i], func() int64 { return 0 }); err != nil {
			return nil, err
		}
		start := time.Now()
		deadline := start.Add(10 * time.Second)
		for {
			err := f.store.Verify(id, f.secret)
			if errors.Is(err, tokenshadow.ErrWrongSecret) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("edit %d: verifying the old secret: %w", i, err)
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("edit %d not noticed within 10s", i)
			}
			runtime.Gosched() // spin: the measurement wants the first moment it is refused
		}
		out = append(out, time.Since(start))
		if err := f.store.Verify(id, secrets[i]); err != nil {
			return nil, fmt.Errorf("edit %d: the new secret after the edit was noticed: %w", i, err)
		}
		f.secret = secrets[i]
	}
	return out, nil
}

// scratchHashes makes n fresh secrets and their $5$ hashes with a Store on a scratch file.
func scratchHashes(n int) (hashes, secrets []string, err error) {
	scratch, err := newFixture(1)
	if err != nil {
		return nil, nil, err
	}
	defer scratch.close()
	for range n {
		secret, err := scratch.store.Generate(scratch.ids[0])
		if err != nil {
			return nil, nil, err
		}
		h, err := firstHash(scratch.store.Path())
		if err != nil {
			return nil, nil, err
		}
		hashes, secrets = append(hashes, h), append(secrets, secret)
	}
	return hashes, secrets, nil
}
