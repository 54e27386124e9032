package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sensorlog_upload.go owns the HTTP side of sensor log streams (CONTRACT
// §13): segment PUTs and seal POSTs with the agent's worker JWT (re-signed
// and resent once on 401), each attempt bounded, retried with jittered
// backoff on network errors, timeouts, 408, 429 and 5xx only.

// jwtSource is the worker JWT the uploads carry (workerJWTSigner).
type jwtSource interface {
	current() (string, error)
	refresh() (string, error)
}

// Retry schedule of one segment or seal (the reference's): 10 s per
// attempt, backoff 100 ms doubling to 2 s, with jitter.
const (
	logAttemptTimeout  = 10 * time.Second
	logRetryBaseDelay  = 100 * time.Millisecond
	logRetryMaxDelay   = 2 * time.Second
	logUploadMaxAnswer = 4 << 10
)

// logUploadError is a failed upload: Status 0 for a network error or timeout.
type logUploadError struct {
	Op     string // "segment" or "seal"
	Status int
	Err    error
}

func (e *logUploadError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("log %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("log %s: HTTP %d", e.Op, e.Status)
}

func (e *logUploadError) Unwrap() error { return e.Err }

// retryable reports whether another attempt may succeed.
func (e *logUploadError) retryable() bool {
	return e.Status == 0 || e.Status == http.StatusRequestTimeout ||
		e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// isRetryableLogError reports whether err is worth retrying.
func isRetryableLogError(err error) bool {
	var ue *logUploadError
	return errors.As(err, &ue) && ue.retryable()
}

// logUploader sends segments and seals to {api_url}/api/v1/internal/logs.
type logUploader struct {
	base   string
	jwt    jwtSource
	http   *http.Client
	jitter func() float64
}

func newLogUploader(apiURL string, jwt jwtSource) *logUploader {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.MaxIdleConnsPerHost = 16
	return &logUploader{base: strings.TrimRight(apiURL, "/"), jwt: jwt,
		http: &http.Client{Transport: tr}, jitter: rand.Float64}
}

// putSegment commits seq of version with retries (attempts in all).
func (u *logUploader) putSegment(ctx context.Context, version, seq int64, data []byte, attempts int) error {
	url := fmt.Sprintf("%s/api/v1/internal/logs/%d/segments/%d", u.base, version, seq)
	return u.retry(ctx, attempts, func(ctx context.Context) error {
		return u.send(ctx, "segment", http.MethodPut, url, data)
	})
}

// seal closes version; truncated says output of it was dropped.
func (u *logUploader) seal(ctx context.Context, version int64, truncated bool, attempts int) error {
	url := fmt.Sprintf("%s/api/v1/internal/logs/%d/seal?truncated=%t", u.base, version, truncated)
	return u.retry(ctx, attempts, func(ctx context.Context) error {
		return u.send(ctx, "seal", http.MethodPost, url, nil)
	})
}

// retry runs op up to attempts times while its error is retryable.
func (u *logUploader) retry(ctx context.Context, attempts int, op func(context.Context) error) error {
	delay := logRetryBaseDelay
	var err error
	for i := 0; i < max(attempts, 1); i++ {
		if i > 0 {
			d := time.Duration(float64(delay) * (0.5 + u.jitter()))
			if !sleepCtx(ctx, d) {
				return fmt.Errorf("%w (then %w)", err, ctx.Err())
			}
			delay = min(2*delay, logRetryMaxDelay)
		}
		actx, cancel := context.WithTimeout(ctx, logAttemptTimeout)
		err = op(actx)
		cancel()
		if err == nil || !isRetryableLogError(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// send makes one request, re-signing the worker JWT and resending once on 401.
func (u *logUploader) send(ctx context.Context, op, method, url string, body []byte) error {
	jwt, err := u.jwt.current()
	if err != nil {
		return fmt.Errorf("log %s: sign worker JWT: %w", op, err)
	}
	status, err := u.do(ctx, method, url, jwt, body)
	if err == nil && status == http.StatusUnauthorized {
		if jwt, err = u.jwt.refresh(); err != nil {
			return fmt.Errorf("log %s: re-sign worker JWT: %w", op, err)
		}
		status, err = u.do(ctx, method, url, jwt, body)
	}
	if err != nil {
		return &logUploadError{Op: op, Err: err}
	}
	if status < 200 || status > 299 {
		return &logUploadError{Op: op, Status: status}
	}
	return nil
}

func (u *logUploader) do(ctx context.Context, method, url, jwt string, body []byte) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := u.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, logUploadMaxAnswer))
	return resp.StatusCode, nil
}
