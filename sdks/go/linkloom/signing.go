// Package linkloom is the Go SDK of Link Loom: task handlers (net/http), signatures,
// idempotency, async callbacks and heartbeats, pull-mode workers and an API client.
// Standard library only. The protocol is docs/protocol.md in the Link Loom repository.
package linkloom

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	TimestampHeader  = "X-Loom-Timestamp"
	SignatureHeader  = "X-Loom-Signature"
	DefaultTolerance = 300 * time.Second
)

// SignatureError says why a request's signature was refused (never what the right value is).
type SignatureError struct{ Reason string }

func (e *SignatureError) Error() string { return e.Reason }

var signatureFormat = regexp.MustCompile(`^v1=([0-9a-f]{64})$`)
var wholeSeconds = regexp.MustCompile(`^[0-9]{1,15}$`)

// Sign returns the headers that sign body at ts (use time.Now() for now).
func Sign(key string, body []byte, ts time.Time) map[string]string {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	return map[string]string{TimestampHeader: stamp, SignatureHeader: "v1=" + mac(key, stamp, body)}
}

// Verify checks a v1 signature over the raw body within tolerance of now and returns its time.
func Verify(key string, body []byte, header http.Header, tolerance time.Duration, now time.Time) (time.Time, error) {
	stamps, sigs := header.Values(TimestampHeader), header.Values(SignatureHeader)
	if len(stamps) != 1 || len(sigs) != 1 || stamps[0] == "" || sigs[0] == "" {
		return time.Time{}, &SignatureError{fmt.Sprintf("missing %s or %s header", TimestampHeader, SignatureHeader)}
	}
	stamp, sig := stamps[0], strings.TrimSpace(sigs[0])
	if !wholeSeconds.MatchString(stamp) {
		return time.Time{}, &SignatureError{TimestampHeader + " must be whole unix seconds"}
	}
	seconds, _ := strconv.ParseInt(stamp, 10, 64)
	skew := math.Abs(float64(now.Unix() - seconds))
	if skew > tolerance.Seconds() {
		return time.Time{}, &SignatureError{fmt.Sprintf(
			"signature timestamp is %.0fs away from now (allowed: %.0fs); check the clocks or re-sign",
			skew, tolerance.Seconds())}
	}
	match := signatureFormat.FindStringSubmatch(sig)
	if match == nil {
		return time.Time{}, &SignatureError{SignatureHeader + " must be exactly one v1=<64 hex digits> entry"}
	}
	expected, _ := hex.DecodeString(mac(key, stamp, body))
	given, _ := hex.DecodeString(match[1])
	if !hmac.Equal(expected, given) {
		return time.Time{}, &SignatureError{"signature does not match the body"}
	}
	return time.Unix(seconds, 0), nil
}

func mac(key, stamp string, body []byte) string {
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(stamp + "."))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}
