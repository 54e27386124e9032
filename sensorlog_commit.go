package main

import "time"

// sensorlog_commit.go owns what the shipper's worker does with one segment:
// allocate the version it goes to, upload it, rotate, seal, and the
// failure rules (CONTRACT §13): a 4xx latches the version (the rest of the
// generation is dropped, counted); retries exhausted on a transient error
// drop that segment only (its sequence is reused, nothing was committed).

// versionRetry is the wait between attempts to allocate a version while the
// database is unreachable.
const versionRetry = time.Second

// ship uploads one segment to the current version, allocating it first.
func (s *logShipper) ship(seg []byte) {
	if s.latched {
		s.drop(len(seg))
		s.committed(false)
		return
	}
	if s.cur == nil {
		for {
			v, err := s.rows.createVersion(s.ctx, s.art, int64(s.cfg.maxSegment), s.cfg.flush.Milliseconds())
			if err == nil {
				s.cur = &shipVersion{v: v}
				s.log.Debug("sensor log version allocated", "sensor", s.art.SensorRef, "stream", s.art.Stream,
					"version_id", v.ID, "version", v.Version)
				break
			}
			if s.ctx.Err() != nil || !sleepCtx(s.ctx, versionRetry) {
				s.drop(len(seg))
				s.committed(false)
				return
			}
			s.log.Warn("sensor log version not allocated, retrying", "sensor", s.art.SensorRef, "stream", s.art.Stream, "error", err)
		}
	}
	err := s.up.putSegment(s.ctx, s.cur.v.ID, s.cur.seq, seg, s.cfg.attempts)
	if err != nil {
		s.drop(len(seg))
		s.cur.truncated = true
		s.committed(false)
		if isRetryableLogError(err) || s.ctx.Err() != nil {
			s.log.Warn("sensor log segment not shipped (API unreachable); dropped", "sensor", s.art.SensorRef,
				"stream", s.art.Stream, "version_id", s.cur.v.ID, "sequence", s.cur.seq, "bytes", len(seg), "error", err)
			sleepCtx(s.ctx, logRetryMaxDelay)
			return
		}
		s.latched = true
		s.log.Warn("sensor log version refused by the API; the rest of this run's stream is dropped", "sensor", s.art.SensorRef,
			"stream", s.art.Stream, "version_id", s.cur.v.ID, "sequence", s.cur.seq, "error", err)
		return
	}
	s.committed(true)
	s.cur.seq++
	s.cur.handed += int64(len(seg))
	if s.cfg.rotateAt > 0 && s.cur.handed >= s.cfg.rotateAt {
		s.sealCurrent()
	}
}

// sealCurrent seals the current version, if any (truncated when bytes of
// it were dropped), and forgets it: the next byte opens a new one.
func (s *logShipper) sealCurrent() {
	if s.cur == nil {
		return
	}
	v := s.cur
	s.cur = nil
	if err := s.up.seal(s.ctx, v.v.ID, v.truncated || s.latched, s.cfg.attempts); err != nil {
		s.log.Warn("sensor log version not sealed", "sensor", s.art.SensorRef, "stream", s.art.Stream,
			"version_id", v.v.ID, "error", err)
	}
}

// reportDrops logs the drop counter in one summary line and resets it.
func (s *logShipper) reportDrops(reason string) {
	s.mu.Lock()
	n := s.dropped
	s.dropped = 0
	s.mu.Unlock()
	if n > 0 {
		s.log.Warn("sensor output dropped", "sensor", s.art.SensorRef, "stream", s.art.Stream,
			"dropped_bytes", n, "reason", reason)
	}
}
