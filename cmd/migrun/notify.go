package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/migrun/migrun/notify"
	"github.com/migrun/migrun/report"
)

// NotifySettings are where results go besides the log and the termination
// log: Slack, and a generic webhook that receives the result document.
type NotifySettings struct {
	SlackWebhookURL string       `env:"SLACK_WEBHOOK_URL" also:"SLACK_WEB_HOOK_URL" flag:"slack-webhook-url" secret:"true" private:"true" help:"Slack incoming webhook"`
	SlackBotToken   string       `env:"SLACK_BOT_TOKEN" flag:"slack-bot-token" secret:"true" private:"true" help:"Slack bot token, instead of a webhook (with --slack-channel)"`
	SlackChannel    string       `env:"SLACK_CHANNEL" flag:"slack-channel" help:"Slack channel, e.g. #deploys"`
	SlackAPIURL     string       `env:"SLACK_API_URL" flag:"slack-api-url" help:"Slack Web API base for the bot token, e.g. a proxy"`
	SlackUsername   string       `env:"SLACK_USERNAME" envDefault:"Rails DB Migration" flag:"slack-username" help:"Slack user name"`
	SlackIconEmoji  string       `env:"SLACK_ICON_EMOJI" envDefault:":rails:" flag:"slack-icon-emoji" help:"Slack icon"`
	WebhookURL      string       `env:"MIGRUN_WEBHOOK_URL" flag:"webhook-url" secret:"true" private:"true" help:"a generic webhook that receives each result as a JSON document (notify/README.md)"`
	NotifyTimeout   duration     `env:"MIGRUN_NOTIFY_TIMEOUT" envDefault:"30s" flag:"notify-timeout" help:"bound on all attempts to notify"`
	Notify          notifyPolicy `env:"MIGRUN_NOTIFY" envDefault:"always" flag:"notify" help:"when to notify: always, changes, failures or never"`
	RunningAfter    duration     `env:"MIGRUN_NOTIFY_RUNNING_AFTER" envDefault:"60s" flag:"notify-running-after" help:"post a 'migration running' notice when the command runs longer than this; 0: never"`
	LinkTemplate    string       `env:"MIGRUN_LINK_TEMPLATE" flag:"link-template" help:"a link in each message, e.g. https://argocd.example.com/applications/{app}; {environment}, {app}, {revision}, {host}, {namespace}"`
}

// validate checks the notification settings; its errors name the setting
// and never echo a webhook URL or a token.
func (s *NotifySettings) validate(p *parsed) error {
	if err := s.slackOptions(nil).Validate(); err != nil {
		ptr := &s.SlackWebhookURL
		if s.SlackWebhookURL == "" {
			ptr = &s.SlackBotToken
		}
		return p.invalid(ptr, "%w", err)
	}
	if err := s.webhookOptions(nil).Validate(); err != nil {
		return p.invalid(&s.WebhookURL, "%w", err)
	}
	if err := report.LinkTemplate(s.LinkTemplate).Validate(); err != nil {
		return p.invalid(&s.LinkTemplate, "%w", err)
	}
	return nil
}

// usable reports whether results can be sent somewhere: a configuration
// error is still reported when the notification settings themselves are
// good.
func (s *NotifySettings) usable() bool {
	o, w := s.slackOptions(nil), s.webhookOptions(nil)
	return s.Notify != "" && (o.Enabled() || w.Enabled()) && o.Validate() == nil && w.Validate() == nil
}

func (s *NotifySettings) slackOptions(log *slog.Logger) notify.Options {
	return notify.Options{
		WebhookURL: s.SlackWebhookURL,
		BotToken:   s.SlackBotToken,
		Channel:    s.SlackChannel,
		APIURL:     s.SlackAPIURL,
		Username:   s.SlackUsername,
		IconEmoji:  s.SlackIconEmoji,
		Timeout:    time.Duration(s.NotifyTimeout),
		Logger:     log,
	}
}

func (s *NotifySettings) webhookOptions(log *slog.Logger) notify.WebhookOptions {
	return notify.WebhookOptions{URL: s.WebhookURL, Timeout: time.Duration(s.NotifyTimeout), Logger: log}
}

// notifier sends a run's results where the settings say: a "migration
// running" notice when the command runs long, then the result. Failures
// are logged and never change the exit status.
type notifier struct {
	s      *NotifySettings
	log    *slog.Logger
	policy notify.Policy
	slack  *notify.Notifier // nil: no Slack
	hook   *notify.Webhook  // nil: no generic webhook

	mu      sync.Mutex
	timer   *time.Timer
	posting chan struct{}  // closed once a running notice was posted (or failed)
	posted  *notify.Posted // the running notice, when one went out
}

func newNotifier(s *NotifySettings, log *slog.Logger) *notifier {
	n := &notifier{s: s, log: log, policy: notify.Policy(s.Notify)}
	if o := s.slackOptions(log); o.Enabled() {
		var err error
		if n.slack, err = notify.New(o); err != nil {
			log.Warn("slack is not usable", "err", err)
		}
	}
	if o := s.webhookOptions(log); o.Enabled() {
		var err error
		if n.hook, err = notify.NewWebhook(o); err != nil {
			log.Warn("the result webhook is not usable", "err", err)
		}
	}
	return n
}

// commandStarted arms the running notice: if the command is still running
// after MIGRUN_NOTIFY_RUNNING_AFTER, Slack is told what runs, where and
// since when. snapshot is a copy of the result so far.
func (n *notifier) commandStarted(ctx context.Context, snapshot report.Result) {
	after := time.Duration(n.s.RunningAfter)
	if n.slack == nil || after <= 0 || !n.policy.WantsRunning() {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.posting = make(chan struct{})
	n.timer = time.AfterFunc(after, func() {
		defer close(n.posting)
		posted, err := n.slack.Running(context.WithoutCancel(ctx), snapshot)
		if err != nil {
			n.log.Warn("slack: the running notice failed", "err", err)
			return
		}
		n.log.Info("slack: the migration is running long; notice posted")
		n.mu.Lock()
		n.posted = posted
		n.mu.Unlock()
	})
}

// commandEnded disarms the running notice, or waits for it to be posted.
func (n *notifier) commandEnded() {
	n.mu.Lock()
	timer, posting := n.timer, n.posting
	n.mu.Unlock()
	if timer != nil && !timer.Stop() {
		<-posting
	}
}

// finish sends the result to Slack and the webhook, side by side. Once a
// running notice went out its result follows, whatever the policy.
func (n *notifier) finish(ctx context.Context, res report.Result) {
	n.mu.Lock()
	posted := n.posted
	n.mu.Unlock()
	var wg sync.WaitGroup
	if n.slack != nil && (posted != nil || n.policy.Wants(res)) {
		wg.Go(func() {
			if err := n.slack.Finished(ctx, res, posted); err != nil {
				n.log.Warn("slack notification failed", "err", err)
				return
			}
			n.log.Info("slack notified")
		})
	}
	if n.hook != nil && n.policy.Wants(res) {
		wg.Go(func() {
			if err := n.hook.Send(ctx, res); err != nil {
				n.log.Warn("the result webhook failed", "err", err)
				return
			}
			n.log.Info("result webhook notified")
		})
	}
	wg.Wait()
}
