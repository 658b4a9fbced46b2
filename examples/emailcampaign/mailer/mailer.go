// Package mailer is the mail-sending participant of the email-campaign
// example: a service in its own process (participant SDK) that receives
// SendBatch commands from the campaign saga and sends one mail per
// recipient over SMTP to a configurable server, with a bounded worker
// pool.
//
// Invariants it keeps:
//   - exactly one mail per (campaign, customer) under redelivery and
//     retries: each send is recorded in the service's Deduper under that
//     pair after the server accepted it, and a recorded pair is not sent
//     again (I3 at the level of the mail). The record follows the send,
//     so a crash between the two can repeat that one mail; SMTP offers no
//     idempotency key to close that window.
//   - right before each send it asks its Checker whether the recipient
//     still allows email and whether the campaign was cancelled: a
//     revocation or a cancellation processed before the send prevents it.
//   - an SMTP server that refuses temporarily (4xx, or no connection)
//     fails the batch with a technical error, so the saga retries it and
//     the engine's circuit breaker for "mailer" can open; a permanent
//     refusal of a recipient (5xx) is a bounce, recorded and not retried.
package mailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/transport"
)

// Service is the mailer's queue.
const Service = "mailer"

// Recipient is one addressee of a batch.
type Recipient struct {
	Customer string `json:"customer"`
	Email    string `json:"email"`
}

// SendBatch asks the mailer to mail Recipients for Campaign.
type SendBatch struct {
	Campaign   string      `json:"campaign"`
	Lane       int         `json:"lane"`
	Subject    string      `json:"subject"`
	Body       string      `json:"body"`
	Recipients []Recipient `json:"recipients"`
}

// Skip is a recipient not mailed, with why.
type Skip struct {
	Customer string `json:"customer"`
	Reason   string `json:"reason"`
}

// BatchResult is the outcome of a SendBatch: every recipient is in exactly
// one of the lists.
type BatchResult struct {
	Campaign string   `json:"campaign"`
	Lane     int      `json:"lane"`
	Sent     []string `json:"sent,omitempty"`
	Bounced  []string `json:"bounced,omitempty"`
	Skipped  []Skip   `json:"skipped,omitempty"`
}

// Reasons a recipient is skipped.
const (
	SkipNoPermission = "no permission"
	SkipCancelled    = "campaign cancelled"
)

// Register registers the mailer's command and result types in reg.
func Register(reg *message.Registry) error {
	if err := message.Register[SendBatch](reg, "mailer.SendBatch.v1"); err != nil {
		return err
	}
	return message.Register[BatchResult](reg, "mailer.BatchResult.v1")
}

// Checker answers the questions asked before each send. The campaign
// service's read models answer them (campaigns.NewChecker).
type Checker interface {
	// Allowed reports whether customer allows email now.
	Allowed(ctx context.Context, customer string) (bool, error)
	// Cancelled reports whether campaign was cancelled.
	Cancelled(ctx context.Context, campaign string) (bool, error)
}

// Config configures a Mailer.
type Config struct {
	// SMTPAddr is the SMTP server's host:port (required).
	SMTPAddr string
	// From is the envelope sender (default "campaigns@example.com").
	From string
	// Workers bounds the sends in flight per batch (default 4).
	Workers int
	// Checker is asked before each send (required).
	Checker Checker
	// Deduper records sent (campaign, customer) pairs (required in
	// production: participant.NewStoreDeduper on the service's store).
	Deduper participant.Deduper
	// BeforeSend, when set, is called before each recipient's checks
	// (tests use it to interleave a revocation deterministically).
	BeforeSend func(ctx context.Context, campaign, customer string)
	// OnOutcome, when set, is told each recipient's outcome ("sent" or
	// "bounced") right after it is recorded, and again when a retried
	// batch finds it recorded: the campaign service logs it at once, so a
	// campaign cancelled while a batch is in flight still counts its
	// mails. It must be idempotent; an error fails the batch (retried).
	OnOutcome func(ctx context.Context, campaign, customer, status string) error
	// Timeout bounds each SMTP conversation (default 10s).
	Timeout time.Duration
	// Logger receives the logs (default slog.Default()).
	Logger *slog.Logger
}

// Mailer sends the mails.
type Mailer struct {
	cfg Config
}

// sentConsumer is the Deduper consumer name of per-recipient records.
const sentConsumer = "mailer.sent"

// New checks cfg and returns a Mailer.
func New(cfg Config) (*Mailer, error) {
	if cfg.SMTPAddr == "" {
		return nil, errors.New("mailer: SMTP address is required")
	}
	if _, _, err := net.SplitHostPort(cfg.SMTPAddr); err != nil {
		return nil, fmt.Errorf("mailer: SMTP address %q: %w", cfg.SMTPAddr, err)
	}
	if cfg.Checker == nil {
		return nil, errors.New("mailer: a Checker is required")
	}
	if cfg.Deduper == nil {
		cfg.Deduper = participant.NewMemoryDeduper()
	}
	if cfg.From == "" {
		cfg.From = "campaigns@example.com"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Workers > 64 {
		return nil, fmt.Errorf("mailer: %d workers: want at most 64", cfg.Workers)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Mailer{cfg: cfg}, nil
}

// Participant returns the participant that serves SendBatch on tr with the
// mailer's own registry; call Run on it. opts are passed on (the command
// Deduper defaults to the mailer's).
func (m *Mailer) Participant(tr transport.Transport, opts ...participant.Option) (*participant.Participant, error) {
	reg := message.NewRegistry(nil)
	if err := Register(reg); err != nil {
		return nil, fmt.Errorf("mailer: %w", err)
	}
	opts = append([]participant.Option{participant.WithDeduper(m.cfg.Deduper), participant.WithLogger(m.cfg.Logger)}, opts...)
	p := participant.New(tr, reg, Service, opts...)
	participant.Handle(p, func(ctx context.Context, c *SendBatch, _ participant.Meta) (*BatchResult, error) {
		return m.Send(ctx, c)
	})
	return p, p.Err()
}

// Send mails a batch. It returns a technical error when a temporary SMTP
// failure stopped some recipients; the recipients mailed before stay
// recorded, so the retried batch mails only the others.
func (m *Mailer) Send(ctx context.Context, c *SendBatch) (*BatchResult, error) {
	if c.Campaign == "" {
		return nil, participant.Fail(errors.New("send batch: campaign is required"))
	}
	type outcome struct {
		status, reason string
		err            error
	}
	outs := make([]outcome, len(c.Recipients))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(m.cfg.Workers, max(len(c.Recipients), 1)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				st, reason, err := m.one(ctx, c, c.Recipients[i])
				outs[i] = outcome{st, reason, err}
			}
		}()
	}
	for i := range c.Recipients {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("send batch %s/%d: %w", c.Campaign, c.Lane, err)
	}
	res := &BatchResult{Campaign: c.Campaign, Lane: c.Lane}
	var errs []error
	for i, o := range outs {
		r := c.Recipients[i]
		switch {
		case o.err != nil:
			errs = append(errs, o.err)
		case o.status == "sent":
			res.Sent = append(res.Sent, r.Customer)
		case o.status == "bounced":
			res.Bounced = append(res.Bounced, r.Customer)
		default:
			res.Skipped = append(res.Skipped, Skip{Customer: r.Customer, Reason: o.reason})
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("send batch %s/%d: %d of %d not sent: %w", c.Campaign, c.Lane, len(errs), len(c.Recipients), errors.Join(errs...))
	}
	return res, nil
}

// one sends to r once; status is "sent", "bounced" or "skipped".
func (m *Mailer) one(ctx context.Context, c *SendBatch, r Recipient) (status, reason string, err error) {
	key := c.Campaign + "/" + r.Customer
	if rec, ok, err := m.cfg.Deduper.Seen(ctx, sentConsumer, key); err != nil {
		return "", "", fmt.Errorf("mail %s: %w", key, err)
	} else if ok {
		// Recorded before: the same outcome, no second mail.
		return rec.Type, "", m.tell(ctx, c.Campaign, r.Customer, rec.Type)
	}
	if m.cfg.BeforeSend != nil {
		m.cfg.BeforeSend(ctx, c.Campaign, r.Customer)
	}
	if cancelled, err := m.cfg.Checker.Cancelled(ctx, c.Campaign); err != nil {
		return "", "", fmt.Errorf("mail %s: campaign status: %w", key, err)
	} else if cancelled {
		return "skipped", SkipCancelled, nil
	}
	if ok, err := m.cfg.Checker.Allowed(ctx, r.Customer); err != nil {
		return "", "", fmt.Errorf("mail %s: permission: %w", key, err)
	} else if !ok {
		return "skipped", SkipNoPermission, nil
	}
	_, err = m.cfg.Deduper.Once(ctx, sentConsumer, key, func(ctx context.Context) (message.Envelope, error) {
		status = "sent"
		if err := m.deliver(ctx, c, r); err != nil {
			var perr *textproto.Error
			if !errors.As(err, &perr) || perr.Code < 500 {
				return message.Envelope{}, err
			}
			status = "bounced"
			m.cfg.Logger.Info("mailer: bounced", "campaign", c.Campaign, "customer", r.Customer, "error", err)
		}
		// The record's "reply" carries only the outcome in its Type.
		return message.Envelope{ID: key, Type: status}, nil
	})
	if errors.Is(err, participant.ErrDuplicate) {
		status, err = "sent", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("mail %s: %w", key, err)
	}
	return status, "", m.tell(ctx, c.Campaign, r.Customer, status)
}

func (m *Mailer) tell(ctx context.Context, campaign, customer, status string) error {
	if m.cfg.OnOutcome == nil {
		return nil
	}
	if err := m.cfg.OnOutcome(ctx, campaign, customer, status); err != nil {
		return fmt.Errorf("report %s of %s/%s: %w", status, campaign, customer, err)
	}
	return nil
}

// deliver runs one SMTP conversation for r.
func (m *Mailer) deliver(ctx context.Context, c *SendBatch, r Recipient) error {
	d := net.Dialer{Timeout: m.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", m.cfg.SMTPAddr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", m.cfg.SMTPAddr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(m.cfg.Timeout)); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(m.cfg.SMTPAddr)
	cl, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("smtp greeting: %w", err)
	}
	defer cl.Close()
	if err := cl.Mail(m.cfg.From); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := cl.Rcpt(r.Email); err != nil {
		return fmt.Errorf("RCPT TO %s: %w", r.Email, err)
	}
	w, err := cl.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	msg := "From: " + m.cfg.From + "\r\nTo: " + r.Email + "\r\nSubject: " + oneLine(c.Subject) +
		"\r\nX-Campaign: " + oneLine(c.Campaign) + "\r\nX-Customer: " + oneLine(r.Customer) + "\r\n\r\n" + c.Body + "\r\n"
	if _, err := w.Write([]byte(msg)); err != nil {
		return fmt.Errorf("DATA body: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return cl.Quit()
}

func oneLine(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }
