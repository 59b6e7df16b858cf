//! The terminal UI: the same engine and monitor as `--headless`, drawn with
//! ratatui. One channel carries keys, engine events and snapshots; the loop
//! takes one event, drains the rest, and draws once.

pub mod app;
mod engine_events;
pub mod forecast;
pub mod keys;
pub mod monitor_screen;
pub mod monitor_update;
pub mod prompt;
pub mod prompt_keys;
pub mod rollback_view;
pub mod step_view;
pub mod summary;
pub mod theme;
pub mod truth;
pub mod update;
pub mod views;

use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::watch;

use crate::audit::record::Context;
use crate::engine::{Ask, EngineEvent, Reply, Session};
use crate::monitor::{Feed, News, Signal, SignalAudit, Watcher, send_audited, text};

use app::{App, LogLevel, SessionKind};
use keys::Binding;
use update::{Command, handle_key};

pub enum AppEvent {
    Key(crossterm::event::KeyEvent),
    Redraw,
    Engine(EngineEvent),
    Feed(Feed),
    Note(LogLevel, String),
    Forecast(forecast::ForecastState),
}

/// Runs an engine session in the TUI; returns the exit code.
pub async fn run(
    session: Session,
    kind: SessionKind,
    bindings: Vec<Binding>,
    interval: Duration,
) -> u8 {
    let mut app = App::new(
        &session.runbook,
        &session.analysis,
        kind,
        session.options.env.clone(),
        session.spec.redacted(),
        bindings,
    );
    app.connection_warnings(session.spec.warnings());
    app.emergency = session.options.emergency.clone();
    app.poll_interval = interval;
    let (tx, mut rx) = unbounded_channel::<AppEvent>();
    let tx_for_forecast = tx.clone();
    // The prompts' tables of the same keys.toml (checked with the bindings).
    app.prompts = keys::load_prompts(keys::user_keymap().as_deref())
        .unwrap_or_else(|_| keys::prompt_defaults());
    let long = session.runbook.settings.long_transaction;
    app.forecast = forecast::ForecastState::Measuring;
    tokio::spawn(forecast::measure(
        session.spec.clone(),
        session.analysis.steps.clone(),
        tx_for_forecast.clone(),
    ));
    // Polls the standbys too (a second query) only when the runbook watches them.
    let mut watcher = Watcher::new(&session.spec, long, interval);
    watcher.watch_replicas(app.replica_limit.is_some());
    let audit_ctx = session.recorder.context().clone();
    let audit_path = session.recorder.audit_path().to_path_buf();

    let crate::engine::EngineTask {
        events: mut events_rx,
        replies: replies_tx,
        control: control_tx,
        outcome: engine,
    } = crate::engine::spawn(session);
    let fwd = tx.clone();
    tokio::spawn(async move {
        while let Some(e) = events_rx.recv().await {
            if fwd.send(AppEvent::Engine(e)).is_err() {
                break;
            }
        }
    });
    let (executor_tx, executor_rx) = watch::channel(None);
    let (signal_tx, signal_rx) = unbounded_channel();
    tokio::spawn(monitor_task(
        watcher,
        executor_rx,
        signal_rx,
        audit_ctx,
        tx.clone(),
    ));

    let mut terminal = ratatui::init();
    let key_tx = tx.clone();
    tokio::spawn(async move {
        let mut stream = EventStream::new();
        while let Some(Ok(ev)) = stream.next().await {
            let sent = match ev {
                Event::Key(k) if k.kind == KeyEventKind::Press => key_tx.send(AppEvent::Key(k)),
                Event::Resize(..) => key_tx.send(AppEvent::Redraw),
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
    });

    loop {
        if terminal.draw(|f| views::draw(f, &app)).is_err() {
            break;
        }
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        for ev in batch {
            match ev {
                AppEvent::Key(k) => match handle_key(&mut app, k) {
                    Some(Command::Reply(r)) => {
                        let _ = replies_tx.send(r);
                    }
                    Some(Command::Control(c)) => {
                        let _ = control_tx.send(c);
                    }
                    Some(Command::Signal { pid, signal }) => {
                        let _ = signal_tx.send((pid, signal));
                    }
                    None => {}
                },
                AppEvent::Engine(e) => {
                    if let EngineEvent::Connected(t) = &e {
                        let _ = executor_tx.send(Some(t.pid));
                    }
                    let asks_next = matches!(
                        e,
                        EngineEvent::Asks(Ask::Next { .. } | Ask::End | Ask::Failed { .. })
                    );
                    app.on_engine(e);
                    if asks_next && app.quit {
                        let _ = replies_tx.send(Reply::Quit);
                    }
                }
                AppEvent::Feed(feed) => app.on_feed(feed),
                AppEvent::Note(level, text) => app.log(level, text),
                AppEvent::Forecast(f) => app.forecast = f,
                AppEvent::Redraw => {}
            }
        }
        if app.quit && app.finished.is_some() {
            break;
        }
    }
    ratatui::restore();
    let outcome = engine.await.ok();
    let code = outcome
        .as_ref()
        .map_or(crate::exit::FAILED, crate::exit::of);
    // Left on the terminal once the TUI's screen is gone.
    print!(
        "{}",
        summary::summary(&app, outcome.as_ref(), code, &audit_path)
    );
    code
}

/// Polls on its own connection, reconnecting when it is lost; cancels or
/// terminates backends on request, never the executor's or its own, each
/// only once its audit record is written ([`send_audited`]).
async fn monitor_task(
    mut watcher: Watcher,
    executor: watch::Receiver<Option<i32>>,
    mut signals: tokio::sync::mpsc::UnboundedReceiver<(i32, Signal)>,
    ctx: Context,
    tx: UnboundedSender<AppEvent>,
) {
    let mut audit = SignalAudit::in_default_dir(ctx);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(watcher.due()) => {
                watcher.set_executor(*executor.borrow());
                let (feed, news) = watcher.next().await;
                if let Some(n) = news {
                    let _ = tx.send(AppEvent::Note(news_level(&n), text::news(&n)));
                }
                if tx.send(AppEvent::Feed(feed)).is_err() {
                    return;
                }
            }
            Some((pid, signal)) = signals.recv() => {
                watcher.set_executor(*executor.borrow());
                let report = send_audited(&watcher, &mut audit, pid, signal).await;
                let level = if report.is_bad() { LogLevel::Bad } else { LogLevel::Warn };
                let _ = tx.send(AppEvent::Note(level, report.to_string()));
            }
        }
    }
}

/// How loud a change of the monitor's connection is in the log.
fn news_level(n: &News) -> LogLevel {
    match n {
        News::CannotConnect { .. } | News::Lost { .. } | News::PollFailing { .. } => LogLevel::Warn,
        News::Reconnected { .. } => LogLevel::Good,
    }
}
