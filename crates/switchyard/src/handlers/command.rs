//! `command:` — run a program with the event on stdin and only the environment it is
//! allowed; its exit code decides the outcome.

use std::io;
use std::path::PathBuf;
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use switchyard_core::config;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};

use super::BuildError;
use crate::{Context, Event, Handler, HandlerError, HandlerFuture};

/// How much of stderr the error message keeps: the end, where the reason usually is.
const STDERR_TAIL_BYTES: usize = 2048;
/// How much of stdout is kept for the debug log.
const STDOUT_TAIL_BYTES: usize = 4096;
/// How much of each stream the attempt's output keeps: the ends of stdout and of
/// stderr, labelled, fit [`OUTPUT_LIMIT`](crate::OUTPUT_LIMIT) together.
const OUTPUT_TAIL_BYTES: usize = 2000;
/// After the program exits (and its process group is killed), how long to wait for its
/// output pipes to close. A process that left the group (with `setsid`) may hold them
/// open for ever.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Runs a program once per delivery.
///
/// - The event is written to stdin as structured CloudEvent JSON, then stdin is closed.
/// - The environment is cleared. The program gets `PATH`, the variables listed in
///   `env` (when Switchyard itself has them), and `SWITCHYARD_EVENT_ID`,
///   `SWITCHYARD_TRIGGER`, `SWITCHYARD_ATTEMPT` and `SWITCHYARD_IDEMPOTENCY_KEY`.
/// - Exit 0 succeeds. An exit code in `retry_exit_codes`, or death by a signal, is
///   retried. Any other code is fatal, with the end of stderr in the message. A
///   program that cannot be started (not found, not executable) is fatal.
/// - The program runs in a process group of its own, and the whole group is killed
///   (SIGKILL) when the attempt ends: when the program exits, when the attempt's
///   deadline passes (the future is dropped), and on cancellation. So processes it
///   started in the background never outlive the attempt, and a retry never runs
///   beside them. Only a process that leaves the group (`setsid`) escapes this.
#[derive(Debug)]
pub struct CommandHandler {
    program: String,
    args: Vec<String>,
    env: Vec<String>,
    retry_exit_codes: Vec<i32>,
    working_dir: Option<PathBuf>,
}

impl CommandHandler {
    /// Fails on an empty program or an `env` entry that cannot be a variable name.
    /// Whether the program exists is only known when it is run.
    pub fn new(config: &config::CommandHandler) -> Result<Self, BuildError> {
        if config.program.trim().is_empty() {
            return Err(BuildError::EmptyProgram);
        }
        if let Some(name) = config
            .env
            .iter()
            .find(|name| name.is_empty() || name.contains(['=', '\0']))
        {
            return Err(BuildError::InvalidEnvName { name: name.clone() });
        }
        Ok(Self {
            program: config.program.clone(),
            args: config.args.clone(),
            env: config.env.clone(),
            retry_exit_codes: config.retry_exit_codes.clone(),
            working_dir: config.working_dir.as_ref().map(PathBuf::from),
        })
    }

    fn command(&self, ctx: &Context, event: &Event) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).env_clear();
        for name in std::iter::once("PATH").chain(self.env.iter().map(String::as_str)) {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .env("SWITCHYARD_EVENT_ID", event.switchyard_id.to_string())
            .env("SWITCHYARD_TRIGGER", ctx.trigger())
            .env("SWITCHYARD_ATTEMPT", ctx.attempt().to_string())
            .env("SWITCHYARD_IDEMPOTENCY_KEY", ctx.idempotency_key(event))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        command
    }

    async fn run(&self, ctx: &Context, event: &Event) -> Result<(), HandlerError> {
        let input =
            serde_json::to_vec(event).map_err(|e| HandlerError::fatal(CommandError::Encode(e)))?;
        let mut child = self
            .command(ctx, event)
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let group = ProcessGroup::of(&child);

        let mut stdout = Tail::new(STDOUT_TAIL_BYTES);
        let mut stderr = Tail::new(STDERR_TAIL_BYTES);
        let finished = tokio::select! {
            biased;
            () = ctx.cancellation().cancelled() => None,
            result = exchange(&mut child, &group, &input, &mut stdout, &mut stderr) => Some(result),
        };
        if let Some(output) = output_of(&stdout, &stderr) {
            ctx.set_output(output);
        }
        let Some(result) = finished else {
            group.kill();
            if let Err(error) = child.wait().await {
                tracing::debug!(program = %self.program, %error, "could not reap the cancelled command");
            }
            return Err(HandlerError::retryable(CommandError::Cancelled {
                program: self.program.clone(),
            }));
        };
        let (status, written) = result.map_err(|e| {
            HandlerError::retryable(CommandError::Wait {
                program: self.program.clone(),
                source: e,
            })
        })?;

        if !stdout.is_empty() {
            tracing::debug!(program = %self.program, stdout = %stdout.text(), "command output");
        }
        let program = self.program.clone();
        let stderr = stderr.text();
        match status.code() {
            Some(0) => written
                .map_err(|e| HandlerError::retryable(CommandError::Stdin { program, source: e })),
            Some(code) if self.retry_exit_codes.contains(&code) => {
                Err(HandlerError::retryable(CommandError::Exited {
                    program,
                    code,
                    stderr,
                }))
            }
            Some(code) => Err(HandlerError::fatal(CommandError::Exited {
                program,
                code,
                stderr,
            })),
            None => Err(HandlerError::retryable(CommandError::Killed {
                program,
                signal: signal(status),
                stderr,
            })),
        }
    }

    fn spawn_error(&self, error: io::Error) -> HandlerError {
        let program = self.program.clone();
        match error.kind() {
            // The machine is short of processes, memory or file descriptors: that passes.
            io::ErrorKind::WouldBlock | io::ErrorKind::OutOfMemory | io::ErrorKind::Interrupted => {
                HandlerError::retryable(CommandError::Spawn {
                    program,
                    hint: "",
                    source: error,
                })
            }
            io::ErrorKind::NotFound => HandlerError::fatal(CommandError::Spawn {
                program,
                hint: " (not found: is it installed and on PATH, and does working_dir exist?)",
                source: error,
            }),
            _ => HandlerError::fatal(CommandError::Spawn {
                program,
                hint: "",
                source: error,
            }),
        }
    }
}

impl Handler for CommandHandler {
    fn handle<'a>(&'a self, ctx: Context, event: Event) -> HandlerFuture<'a> {
        Box::pin(async move { self.run(&ctx, &event).await })
    }
}

/// The process group a command runs in, killed when this is dropped: whatever ends
/// the attempt (exit, deadline, cancellation, shutdown), nothing of it keeps running.
struct ProcessGroup {
    /// The group's id, which is the program's pid; `None` if it could not be read.
    id: Option<i32>,
}

impl ProcessGroup {
    fn of(child: &Child) -> Self {
        Self {
            id: child.id().and_then(|pid| i32::try_from(pid).ok()),
        }
    }

    /// Sends SIGKILL to every process in the group. The group id stays taken while the
    /// leader is unreaped or any member lives; once the group is empty the id is free,
    /// and reaching an unrelated group would take a new process getting that very pid
    /// and making itself a group leader between the leader's exit and this call.
    fn kill(&self) {
        #[cfg(unix)]
        if let Some(id) = self.id {
            // SAFETY: killpg only sends a signal; it touches no memory of ours.
            let sent = unsafe { libc::killpg(id, libc::SIGKILL) };
            if sent != 0 {
                let error = io::Error::last_os_error();
                // ESRCH: every process of the group has exited already.
                if error.raw_os_error() != Some(libc::ESRCH) {
                    tracing::warn!(group = id, %error, "could not kill a command's process group");
                }
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Feeds `input` to the child's stdin while collecting stdout and stderr, and waits for
/// it to exit; then kills what is left of its `group`, so that its output ends. Returns
/// the exit status and whether stdin was written; a program that exits without reading
/// all of stdin is not an error.
///
/// Cancel-safe in the sense that matters here: dropping it leaves `child` and `group`
/// to the caller, and whatever output was read is already in the tails.
async fn exchange(
    child: &mut Child,
    group: &ProcessGroup,
    input: &[u8],
    stdout: &mut Tail,
    stderr: &mut Tail,
) -> io::Result<(ExitStatus, io::Result<()>)> {
    let stdin = child.stdin.take();
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let mut pipes = pin!(async {
        let (written, ()) = tokio::join!(write_input(stdin, input), async {
            tokio::join!(stdout.fill(out), stderr.fill(err));
        });
        written
    });

    let mut written = Ok(());
    let status = tokio::select! {
        status = child.wait() => {
            group.kill();
            match tokio::time::timeout(OUTPUT_GRACE, &mut pipes).await {
                Ok(result) => written = result,
                Err(_) => tracing::debug!("the command exited but its output stays open, held by a process that left its group"),
            }
            status?
        }
        result = &mut pipes => {
            written = result;
            child.wait().await?
        }
    };
    Ok((status, written))
}

async fn write_input(stdin: Option<ChildStdin>, input: &[u8]) -> io::Result<()> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    match stdin.write_all(input).await {
        // The program did not read its input; its exit code still decides.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
    // Dropping `stdin` here closes it, so the program sees end of input.
}

#[cfg(unix)]
fn signal(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn signal(_status: ExitStatus) -> Option<i32> {
    None
}

/// The attempt's output: the end of each stream that said something, under a
/// `stdout:` or `stderr:` label.
fn output_of(stdout: &Tail, stderr: &Tail) -> Option<String> {
    let mut output = String::new();
    for (label, tail) in [("stdout", stdout), ("stderr", stderr)] {
        if tail.is_empty() {
            continue;
        }
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(label);
        output.push_str(":\n");
        output.push_str(&tail.end(OUTPUT_TAIL_BYTES));
    }
    (!output.is_empty()).then_some(output)
}

/// The last `cap` bytes of an output stream.
struct Tail {
    bytes: Vec<u8>,
    cap: usize,
    dropped: bool,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            bytes: Vec::new(),
            cap,
            dropped: false,
        }
    }

    /// Reads `reader` to its end. A read error ends the stream early; it is logged,
    /// since the exit code, not the output, decides the outcome.
    async fn fill(&mut self, reader: Option<impl AsyncRead + Unpin>) {
        let Some(mut reader) = reader else { return };
        let mut buf = vec![0; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => self.push(&buf[..n]),
                Err(error) => {
                    tracing::warn!(%error, "could not read the command's output");
                    return;
                }
            }
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * self.cap {
            let excess = self.bytes.len() - self.cap;
            self.bytes.drain(..excess);
            self.dropped = true;
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The last `limit` bytes (at most `cap`) as they were written, lines and all,
    /// after `…` when anything before them was dropped.
    fn end(&self, limit: usize) -> String {
        let start = self.bytes.len().saturating_sub(limit.min(self.cap));
        let text = String::from_utf8_lossy(&self.bytes[start..]);
        if start > 0 || self.dropped {
            // A character cut in half at the start decodes as U+FFFD.
            format!("…{}", text.trim_start_matches('\u{FFFD}'))
        } else {
            text.into_owned()
        }
    }

    /// The kept output as one line of at most `cap` bytes (plus `…` when the start was
    /// dropped): lines trimmed and joined with ` | `.
    fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(self.cap);
        let text = String::from_utf8_lossy(&self.bytes[start..]);
        // A character cut in half at the start decodes as U+FFFD.
        let text = if start > 0 {
            text.trim_start_matches('\u{FFFD}')
        } else {
            &text
        };
        let joined = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
        // The separators make the text longer than the bytes kept; hold it to `cap`.
        let mut cut = joined.len().saturating_sub(self.cap);
        while !joined.is_char_boundary(cut) {
            cut += 1;
        }
        if self.dropped || start > 0 || cut > 0 {
            format!("…{}", &joined[cut..])
        } else {
            joined
        }
    }
}

/// Why a command attempt failed. Messages name the program but never its arguments or
/// environment, which may hold secrets.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("could not start command `{program}`{hint}")]
    Spawn {
        program: String,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("command `{program}` exited with status {code}{}", stderr_suffix(.stderr))]
    Exited {
        program: String,
        code: i32,
        stderr: String,
    },
    #[error("command `{program}` was killed by {}{}", describe_signal(*.signal), stderr_suffix(.stderr))]
    Killed {
        program: String,
        signal: Option<i32>,
        stderr: String,
    },
    #[error("command `{program}` was stopped: cancelled by shutdown or the deadline")]
    Cancelled { program: String },
    #[error("could not wait for command `{program}`")]
    Wait {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("could not write the event to the stdin of command `{program}`")]
    Stdin {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("the event does not encode as JSON")]
    Encode(#[source] serde_json::Error),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        " (stderr was empty)".to_owned()
    } else {
        format!(": {stderr}")
    }
}

fn describe_signal(signal: Option<i32>) -> String {
    match signal {
        Some(signal) => format!("signal {signal}"),
        None => "a signal".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::ErrorKind;
    use crate::handlers::test_context;

    /// A file in the temp directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new() -> Self {
            Self(
                std::env::temp_dir()
                    .join(format!("switchyard-command-test-{}", uuid::Uuid::new_v4())),
            )
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }

        fn read(&self) -> Vec<u8> {
            std::fs::read(&self.0).unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            // The test may have failed before the file was written.
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn handler(program: &str, args: &[&str], env: &[&str]) -> CommandHandler {
        CommandHandler::new(&config::CommandHandler {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env.iter().map(|e| (*e).to_owned()).collect(),
            retry_exit_codes: vec![75],
            working_dir: None,
        })
        .unwrap()
    }

    fn sh(script: &str, args: &[&str]) -> CommandHandler {
        let mut all = vec!["-c", script, "sh"];
        all.extend_from_slice(args);
        handler("sh", &all, &[])
    }

    fn event() -> Event {
        Event::new("orders", "/orders", "order.created").with_json(json!({"id": 42}))
    }

    #[tokio::test]
    async fn the_event_json_arrives_on_stdin() {
        let out = TempFile::new();
        let event = event();
        sh(r#"cat > "$1""#, &[out.path()])
            .handle(test_context("audit"), event.clone())
            .await
            .unwrap();
        assert_eq!(out.read(), serde_json::to_vec(&event).unwrap());
    }

    #[tokio::test]
    async fn the_output_keeps_the_end_of_stdout_and_stderr() {
        let ctx = test_context("t");
        sh("echo hello; echo oops >&2", &[])
            .handle(ctx.clone(), event())
            .await
            .unwrap();
        assert_eq!(
            ctx.output.take().as_deref(),
            Some("stdout:\nhello\nstderr:\noops\n")
        );

        let ctx = test_context("t");
        let err = sh("head -c 9000 /dev/zero | tr '\\0' x; echo END; exit 3", &[])
            .handle(ctx.clone(), event())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("status 3"), "{err}");
        let output = ctx.output.take().unwrap();
        assert!(output.starts_with("stdout:\n…xxx"), "{}", &output[..20]);
        assert!(output.ends_with("xEND\n"), "{output}");
        assert!(
            output.len() <= crate::OUTPUT_LIMIT,
            "{} bytes",
            output.len()
        );

        let ctx = test_context("t");
        sh("true", &[]).handle(ctx.clone(), event()).await.unwrap();
        assert_eq!(ctx.output.take(), None, "a silent command says nothing");
    }

    #[tokio::test]
    async fn only_allowlisted_variables_reach_the_program() {
        // Two variables of this test process: one allowed, one not. The shell's own
        // variables are skipped, since `sh` sets them itself.
        let shell_owned = [
            "PATH", "PWD", "OLDPWD", "SHLVL", "_", "HOME", "IFS", "OPTIND", "PS1", "PS2", "PS4",
        ];
        let mut candidates = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .filter(|(name, value)| !shell_owned.contains(&name.as_str()) && !value.contains('\n'));
        let (allowed, allowed_value) = candidates
            .next()
            .expect("the test process has environment variables");
        let (denied, _) = candidates
            .next()
            .expect("the test process has two environment variables");

        let out = TempFile::new();
        let mut command = sh(r#"env > "$1""#, &[out.path()]);
        command.env = vec![allowed.clone(), "SWITCHYARD_TEST_SURELY_UNSET".to_owned()];
        let event = event();
        let ctx = test_context("audit");
        let key = ctx.idempotency_key(&event);
        command.handle(ctx, event.clone()).await.unwrap();

        let text = String::from_utf8(out.read()).unwrap();
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect();
        assert_eq!(
            vars.get(allowed.as_str()),
            Some(&allowed_value.as_str()),
            "{text}"
        );
        assert!(
            !vars.contains_key(denied.as_str()),
            "{denied} leaked: {text}"
        );
        assert!(!vars.contains_key("SWITCHYARD_TEST_SURELY_UNSET"), "{text}");
        assert_eq!(
            vars.get("PATH").copied(),
            std::env::var("PATH").ok().as_deref(),
            "{text}"
        );
        assert_eq!(
            vars.get("SWITCHYARD_EVENT_ID"),
            Some(&event.switchyard_id.to_string().as_str())
        );
        assert_eq!(vars.get("SWITCHYARD_TRIGGER"), Some(&"audit"));
        assert_eq!(vars.get("SWITCHYARD_ATTEMPT"), Some(&"1"));
        assert_eq!(vars.get("SWITCHYARD_IDEMPOTENCY_KEY"), Some(&key.as_str()));
    }

    #[tokio::test]
    async fn a_retry_exit_code_is_retryable() {
        let err = sh("exit 75", &[])
            .handle(test_context("t"), event())
            .await
            .expect_err("exit 75");
        assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
        assert_eq!(
            err.to_string(),
            "command `sh` exited with status 75 (stderr was empty)"
        );
    }

    #[tokio::test]
    async fn another_exit_code_is_fatal_with_the_stderr_text() {
        let script = r#"echo "looking up order" >&2; echo "no such order: 42" >&2; exit 3"#;
        let err = sh(script, &[])
            .handle(test_context("t"), event())
            .await
            .expect_err("exit 3");
        assert!(err.is_fatal(), "{err}");
        assert_eq!(
            err.to_string(),
            "command `sh` exited with status 3: looking up order | no such order: 42"
        );

        let err = handler("false", &[], &[])
            .handle(test_context("t"), event())
            .await
            .expect_err("false");
        assert!(err.is_fatal(), "{err}");
        assert!(
            err.to_string()
                .starts_with("command `false` exited with status 1"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn only_the_end_of_a_long_stderr_is_kept_and_nothing_deadlocks() {
        // Lots of stderr before reading stdin, and a large event: both pipes must flow
        // at once.
        let script = r#"yes "noise" | head -c 300000 >&2; cat > /dev/null; echo "the real reason" >&2; exit 3"#;
        let big = Event::new("s", "/s", "t").with_json(json!({"blob": "x".repeat(1 << 20)}));
        let err = sh(script, &[])
            .handle(test_context("t"), big)
            .await
            .expect_err("exit 3");
        let message = err.to_string();
        assert!(
            message.ends_with("noise | the real reason"),
            "{}",
            &message[message.len() - 100..]
        );
        assert!(
            message.starts_with("command `sh` exited with status 3: …"),
            "{}",
            &message[..100]
        );
        assert!(
            message.len() < STDERR_TAIL_BYTES + 100,
            "{} bytes",
            message.len()
        );
    }

    #[tokio::test]
    async fn a_program_that_ignores_stdin_can_still_succeed() {
        let big = Event::new("s", "/s", "t").with_json(json!({"blob": "x".repeat(1 << 20)}));
        handler("true", &[], &[])
            .handle(test_context("t"), big)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn death_by_signal_is_retryable() {
        let err = sh("kill -TERM $$", &[])
            .handle(test_context("t"), event())
            .await
            .expect_err("killed");
        assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
        assert!(
            err.to_string()
                .starts_with("command `sh` was killed by signal 15"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_fatal() {
        let command = handler("switchyard-no-such-program", &[], &[]);
        let err = command
            .handle(test_context("t"), event())
            .await
            .expect_err("not found");
        assert!(err.is_fatal(), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with("could not start command `switchyard-no-such-program` (not found"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn stdout_does_not_affect_the_outcome() {
        sh("echo hello; echo world", &[])
            .handle(test_context("t"), event())
            .await
            .unwrap();
    }

    /// Whether `pid` is gone or a zombie waiting to be reaped.
    #[cfg(target_os = "linux")]
    async fn wait_until_dead(pid: &str) -> bool {
        for _ in 0..100 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
                {
                    return true;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        false
    }

    #[cfg(target_os = "linux")]
    async fn wait_for_pid(file: &TempFile) -> String {
        for _ in 0..200 {
            let pid = std::fs::read_to_string(&file.0).unwrap_or_default();
            if pid.ends_with('\n') {
                return pid.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the command never wrote its pid");
    }

    /// A script that starts a background process, writes its pid to `$1`, then runs
    /// `rest`: killing only the direct child would leave the background one running.
    fn forking(rest: &str, pid_file: &TempFile) -> CommandHandler {
        sh(
            &format!(r#"sleep 600 & echo $! > "$1"; {rest}"#),
            &[pid_file.path()],
        )
    }

    /// Dropping the attempt (its deadline passed) kills the program's whole group.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn dropping_the_attempt_kills_the_program_and_its_children() {
        let pid_file = TempFile::new();
        let command = forking("exec sleep 30", &pid_file);
        let attempt = command.handle(test_context("t"), event());
        let outcome = tokio::time::timeout(Duration::from_millis(300), attempt).await;
        assert!(outcome.is_err(), "the attempt should still be running");
        let pid = wait_for_pid(&pid_file).await;
        assert!(
            wait_until_dead(&pid).await,
            "process {pid} survived its attempt"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn cancellation_kills_the_program_and_its_children() {
        let pid_file = TempFile::new();
        let command = forking("exec sleep 30", &pid_file);
        let ctx = test_context("t");
        let token = ctx.cancellation().clone();
        let attempt = tokio::spawn(async move { command.handle(ctx, event()).await });
        let pid = wait_for_pid(&pid_file).await;
        token.cancel();
        let err = attempt.await.unwrap().expect_err("cancelled");
        assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert!(
            wait_until_dead(&pid).await,
            "process {pid} survived cancellation"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_programs_children_die_when_it_exits() {
        let pid_file = TempFile::new();
        forking("exit 0", &pid_file)
            .handle(test_context("t"), event())
            .await
            .unwrap();
        let pid = wait_for_pid(&pid_file).await;
        assert!(
            wait_until_dead(&pid).await,
            "process {pid} outlived the program that started it"
        );
    }

    #[tokio::test]
    async fn any_output_is_kept_within_bounds() {
        // NUL bytes, invalid UTF-8 and far more output than is kept, on both streams.
        let script = r#"printf 'a\000b\377\376' >&2; head -c 50000000 /dev/zero; head -c 50000000 /dev/zero >&2; printf 'the end' >&2; exit 3"#;
        let err = sh(script, &[])
            .handle(test_context("t"), event())
            .await
            .expect_err("exit 3");
        let message = err.to_string();
        assert!(
            message.len() < STDERR_TAIL_BYTES + 100,
            "{} bytes",
            message.len()
        );
        assert!(
            message.ends_with("the end"),
            "{}",
            &message[message.len() - 20..]
        );
    }

    #[test]
    fn bad_settings_are_rejected() {
        let config = |program: &str, env: &[&str]| config::CommandHandler {
            program: program.to_owned(),
            args: Vec::new(),
            env: env.iter().map(|e| (*e).to_owned()).collect(),
            retry_exit_codes: vec![75],
            working_dir: None,
        };
        assert!(matches!(
            CommandHandler::new(&config(" ", &[])),
            Err(BuildError::EmptyProgram)
        ));
        assert!(matches!(
            CommandHandler::new(&config("true", &["A=B"])),
            Err(BuildError::InvalidEnvName { .. })
        ));
        assert!(matches!(
            CommandHandler::new(&config("true", &[""])),
            Err(BuildError::InvalidEnvName { .. })
        ));
    }

    #[test]
    fn a_tail_keeps_the_end() {
        let mut tail = Tail::new(10);
        tail.push(b"first line\n");
        tail.push(b"second\nlast");
        assert_eq!(tail.text(), "…ond | last");
        let mut tail = Tail::new(64);
        tail.push(b"  one \n\n two\n");
        assert_eq!(tail.text(), "one | two");
    }
}
