// Package smtpsink is an SMTP server on a loopback port that records every
// message it accepts, for the email-campaign example's tests and its
// all-in-one demo (built on github.com/emersion/go-smtp, so the mailer's
// net/smtp client talks to a real SMTP implementation). It can refuse
// temporarily (an outage: 421 to every MAIL command) and bounces, with a
// permanent 550, every recipient in a configured domain.
package smtpsink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Message is one accepted mail.
type Message struct {
	From     string
	To       []string
	Campaign string // the X-Campaign header
	Customer string // the X-Customer header
	Subject  string
	At       time.Time
}

// Sink is a running SMTP server. Close stops it.
type Sink struct {
	srv *gosmtp.Server
	ln  net.Listener

	mu           sync.Mutex
	msgs         []Message
	refusing     bool
	refused      int
	refuseAfter  int
	hold         chan struct{} // non-nil: MAIL waits until it is closed
	held         int
	bounceDomain string
	done         chan struct{}
	serveErr     error
}

// Start listens on addr (a loopback host:port; port 0 picks one) and
// serves until Close. Mail to "@"+bounceDomain is refused permanently
// (empty: none).
func Start(addr, bounceDomain string) (*Sink, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("smtp sink: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("smtp sink: address %q: only loopback addresses", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtp sink: listen %s: %w", addr, err)
	}
	s := &Sink{ln: ln, bounceDomain: strings.ToLower(bounceDomain), done: make(chan struct{})}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return &session{sink: s}, nil }))
	srv.Domain = "sink.localhost"
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 50
	s.srv = srv
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.mu.Lock()
			s.serveErr = err
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// Addr is the address the sink listens on.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Close stops the server and waits for it; it returns an error the server
// stopped with.
func (s *Sink) Close() error {
	err := s.srv.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serveErr != nil {
		return s.serveErr
	}
	if errors.Is(err, gosmtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Refuse turns the outage on or off: while on, every MAIL command gets a
// temporary 421.
func (s *Sink) Refuse(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusing = on
}

// Hold makes every MAIL command wait (at most 30s) until Release: the
// mails in flight stay in flight, so a test can change the world
// meanwhile.
func (s *Sink) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
}

// Release lets the held MAIL commands and the later ones go on.
func (s *Sink) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
}

// Held counts the MAIL commands that had to wait.
func (s *Sink) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// RefuseAfter starts the outage (Refuse(true)) once n messages in all
// have been accepted.
func (s *Sink) RefuseAfter(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseAfter = n
	if n <= len(s.msgs) {
		s.refusing, s.refuseAfter = true, 0
	}
}

// Refused counts the MAIL commands refused by the outage.
func (s *Sink) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Messages returns a copy of the accepted messages, in order.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count returns how many messages were accepted.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// PerCampaign returns, per campaign, how many mails each customer got.
func (s *Sink) PerCampaign() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, m := range s.Messages() {
		if out[m.Campaign] == nil {
			out[m.Campaign] = map[string]int{}
		}
		out[m.Campaign][m.Customer]++
	}
	return out
}

type session struct {
	sink *Sink
	from string
	to   []string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

func (x *session) Mail(from string, _ *gosmtp.MailOptions) error {
	x.sink.mu.Lock()
	if hold := x.sink.hold; hold != nil {
		x.sink.held++
		x.sink.mu.Unlock()
		select {
		case <-hold:
		case <-time.After(30 * time.Second):
		}
		x.sink.mu.Lock()
	}
	defer x.sink.mu.Unlock()
	if x.sink.refusing {
		x.sink.refused++
		return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}, Message: "sink refusing (simulated outage)"}
	}
	x.from = from
	return nil
}

func (x *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if d := x.sink.bounceDomain; d != "" && strings.HasSuffix(strings.ToLower(to), "@"+d) {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "malformed message: " + err.Error()}
	}
	msg := Message{
		From: x.from, To: append([]string(nil), x.to...), At: time.Now(),
		Campaign: m.Header.Get("X-Campaign"), Customer: m.Header.Get("X-Customer"), Subject: m.Header.Get("Subject"),
	}
	x.sink.mu.Lock()
	x.sink.msgs = append(x.sink.msgs, msg)
	if x.sink.refuseAfter > 0 && len(x.sink.msgs) >= x.sink.refuseAfter {
		x.sink.refusing, x.sink.refuseAfter = true, 0
	}
	x.sink.mu.Unlock()
	return nil
}
