package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"slimgate.dev/slimgate/pkg/egress"
	"slimgate.dev/slimgate/pkg/policy"
)

// session is one fetch: a reference, its registry client and the rules.
type session struct {
	r      *Remote
	host   string
	repo   string // registry/repository, as docKey takes it
	client *http.Client
	base   string // scheme://host/v2/repo
	pace   func(ctx context.Context, host string) error
}

// authEntry is a cached authenticated transport and the bytes it is
// charged: its ping and token bodies (an upper bound of the token it
// keeps) and transportBytes.
type authEntry struct {
	rt   http.RoundTripper
	size int64
}

// transportBytes is about what ggcr's transport chain and our wrappers
// hold besides the bodies they read and the repository's name (measured
// by TestRemoteCachesChargeRealBytes).
const transportBytes = 1 << 10

// session returns the authenticated client for one repository and scope:
// repo as the registry contacted names it (a mirror's host, with the
// credentials req.Keychain holds for that host), content the upstream's
// registry/repository that keys the documents read. The ggcr transport
// (ping, token) is cached per scope, registry, repository and egress
// mode: never shared across credential scopes.
func (r *Remote) session(ctx context.Context, repo name.Repository, content string, req Request) (*session, error) {
	host := repo.RegistryStr()
	insecure := req.Egress.IsInsecure(host)
	guard := req.Egress.Guarded()
	key := strings.Join([]string{req.CredentialScope, host, repo.RepositoryStr(), strconv.FormatBool(insecure), strconv.FormatBool(guard)}, "\x00")
	cached, ok := r.auth.get(key)
	tr := cached.rt
	if !ok {
		base := r.open
		if guard {
			base = r.guarded
		}
		inner := &capBodies{
			inner: egress.Transport(base, req.Egress),
			max:   max(r.opts.MaxManifestBytes, r.opts.MaxConfigBytes) + 1,
			read:  new(atomic.Int64),
		}
		var regOpts []name.Option
		if insecure {
			regOpts = append(regOpts, name.Insecure)
		}
		reg, err := name.NewRegistry(host, regOpts...)
		if err != nil {
			return nil, reasoned(ReasonBadReference, err)
		}
		kc := req.Keychain
		if kc == nil {
			kc = authn.NewMultiKeychain()
		}
		auth, err := authn.Resolve(ctx, kc, repo)
		if err != nil {
			return nil, reasoned(ReasonCredentials, fmt.Errorf("no credentials: %w", err))
		}
		if err := pace(ctx, req.Pace, host); err != nil {
			return nil, err
		}
		t, err := transport.NewWithContext(ctx, reg, auth, inner, []string{repo.Scope(transport.PullScope)})
		r.metrics.request(host, outcomeOf(err))
		if err != nil {
			return nil, fmt.Errorf("contacting registry %s: %w", host, err)
		}
		tr = t
		r.auth.add(key, authEntry{rt: tr, size: inner.read.Load() + transportBytes + int64(len(repo.Name()))}, 5*time.Minute)
	}
	scheme := "https"
	if insecure {
		scheme = "http"
	}
	return &session{
		r:    r,
		host: host,
		repo: content,
		client: &http.Client{Transport: tr, CheckRedirect: func(next *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if guard {
				return egress.CheckHost(next.URL.Host, r.opts.EgressExempt)
			}
			return nil
		}},
		base: fmt.Sprintf("%s://%s/v2/%s", scheme, host, repo.RepositoryStr()),
		pace: req.Pace,
	}, nil
}

// pace waits as Request.Pace says before a request to host; a wait that
// cannot end in time is a timeout.
func pace(ctx context.Context, p func(context.Context, string) error, host string) error {
	if p == nil {
		return nil
	}
	if err := p(ctx, host); err != nil {
		return reasoned(ReasonTimeout, fmt.Errorf("waiting for a turn to ask %s: %w", host, err))
	}
	return nil
}

// capBodies sits between ggcr's transport and the egress guard: it caps
// every response body so error and token bodies stay bounded whatever
// reads them, and counts the bytes read (session charges a cached
// transport the ping and token bodies read while it was set up).
type capBodies struct {
	inner http.RoundTripper
	max   int64
	read  *atomic.Int64
}

func (c *capBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.inner.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{rc: resp.Body, left: c.max, read: c.read}
	return resp, nil
}

// errBodyTooLarge is returned by a capped body read past its limit.
var errBodyTooLarge = errors.New("response body exceeds the size limit")

// cappedBody fails a read once more than left bytes were read, whatever the
// Content-Length said.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
	read *atomic.Int64 // counts bytes read, if not nil
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.read != nil {
		b.read.Add(int64(n))
	}
	if b.left < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// readBody reads at most limit bytes; more is ReasonTooLarge.
func readBody(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(b)) > limit || errors.Is(err, errBodyTooLarge) {
		return nil, reasoned(ReasonTooLarge, fmt.Errorf("%s is larger than the %d bytes allowed", what, limit))
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return b, nil
}

func contentType(resp *http.Response) types.MediaType {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return types.MediaType(mt)
}

// do sends one request, retrying transient failures (network errors, 5xx,
// 429) only while the retry fits in the context's remaining budget. A
// non-2xx answer is a *statusError.
func (s *session) do(ctx context.Context, method, url, accept string) (*http.Response, error) {
	backoff := s.r.opts.RetryBackoff
	for attempt := 0; ; attempt++ {
		if err := pace(ctx, s.pace, s.host); err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return nil, reasoned(ReasonBadReference, err)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := s.client.Do(req)
		if err == nil && resp.StatusCode/100 == 2 {
			s.r.metrics.request(s.host, "ok")
			return resp, nil
		}
		var wait time.Duration
		retryable := false
		if err != nil {
			s.r.metrics.request(s.host, outcomeOf(err))
			retryable = ctx.Err() == nil && !errors.Is(err, egress.ErrRefused) && !errors.Is(err, errBodyTooLarge)
			wait = backoff
		} else {
			detail := errorDetail(resp)
			resp.Body.Close()
			se := &statusError{method: method, url: url, code: resp.StatusCode, detail: detail}
			err = se
			s.r.metrics.request(s.host, outcomeOf(err))
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				retryable, wait = true, backoff
				if ra, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
					wait = ra
				}
				if !fits(ctx, wait) || attempt >= s.r.opts.Retries {
					return nil, reasoned(ReasonRateLimited, fmt.Errorf("%w (retry after %s does not fit in the time left)", err, wait))
				}
			case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				retryable, wait = true, backoff
			}
		}
		if !retryable || attempt >= s.r.opts.Retries || !fits(ctx, wait) {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff *= 2
	}
}

// fits reports whether waiting d still leaves time for a request (a
// quarter second) before the context's deadline. Deadlines are wall-clock
// times, so this uses the real clock, not Options.Now.
func fits(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d+250*time.Millisecond
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// errorDetail reads a bounded part of an error body for the message.
func errorDetail(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var reg struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if json.Unmarshal(b, &reg) == nil && len(reg.Errors) > 0 {
		var parts []string
		for _, e := range reg.Errors {
			parts = append(parts, strings.TrimSpace(e.Code+" "+e.Message))
		}
		return policy.Truncate(strings.Join(parts, "; "), 200)
	}
	return ""
}
