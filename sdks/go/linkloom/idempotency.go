package linkloom

import (
	"sync"
	"time"
)

// Reply is an HTTP reply to the Link Loom server.
type Reply struct {
	Status int
	Body   any
	Header map[string]string
}

// IdempotencyStore de-duplicates deliveries by Idempotency-Key (docs/protocol.md, section 5).
// Claim marks the key in flight (false when a reply is stored or a live claim exists; a claim
// older than ttl is abandoned); Put stores the final reply and ends the claim (only SUCCESS
// replies are put); Release ends the claim; Get returns the stored reply.
type IdempotencyStore interface {
	Get(key string) (*Reply, bool)
	Claim(key string, ttl time.Duration) bool
	Put(key string, reply Reply)
	Release(key string)
}

// MemoryStore keeps replies in memory for Retention (7 days by default): for tests and
// single-process backends that may forget on restart.
type MemoryStore struct {
	Retention time.Duration
	mu        sync.Mutex
	done      map[string]storedReply
	claims    map[string]time.Time
}

type storedReply struct {
	at    time.Time
	reply Reply
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{Retention: 7 * 24 * time.Hour, done: map[string]storedReply{}, claims: map[string]time.Time{}}
}

func (s *MemoryStore) Get(key string) (*Reply, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(key)
}

func (s *MemoryStore) get(key string) (*Reply, bool) {
	entry, ok := s.done[key]
	if !ok {
		return nil, false
	}
	if time.Since(entry.at) > s.Retention {
		delete(s.done, key)
		return nil, false
	}
	reply := entry.reply
	return &reply, true
}

func (s *MemoryStore) Claim(key string, ttl time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.get(key); ok {
		return false
	}
	if until, ok := s.claims[key]; ok && until.After(time.Now()) {
		return false
	}
	s.claims[key] = time.Now().Add(ttl)
	return true
}

func (s *MemoryStore) Put(key string, reply Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.claims, key)
	s.done[key] = storedReply{at: time.Now(), reply: reply}
}

func (s *MemoryStore) Release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.claims, key)
}
