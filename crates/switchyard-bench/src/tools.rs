//! The outside programs the harness can load with (`wrk`, `pgbench`): finding them,
//! running them to completion, and the scratch files they read.
//!
//! They run as separate processes, as an independent measurement would run them, so
//! that the figures can be checked against one made without this harness's own
//! clients.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

/// A program on `PATH` and how to install it when it is not there.
#[derive(Clone, Copy, Debug)]
pub struct Tool {
    pub name: &'static str,
    /// What the error for a missing tool tells the user to do.
    pub install: &'static str,
}

/// The HTTP load generator of `--load wrk`.
pub const WRK: Tool = Tool {
    name: "wrk",
    install: "install it with `apt-get install wrk` (Debian package `wrk`)",
};

/// Postgres's own benchmark client, for `--floor pgbench`.
pub const PGBENCH: Tool = Tool {
    name: "pgbench",
    install: "it ships with the Postgres server (Debian: `apt-get install postgresql`)",
};

impl Tool {
    /// Whether an executable file of this name is on `PATH`.
    pub fn installed(&self) -> bool {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| is_executable(&dir.join(self.name)))
        })
    }

    /// An error naming the tool and how to install it, unless it is installed.
    pub fn require(&self) -> Result<()> {
        if self.installed() {
            Ok(())
        } else {
            Err(self.missing())
        }
    }

    fn missing(&self) -> anyhow::Error {
        anyhow!("`{}` is not on PATH: {}", self.name, self.install)
    }

    /// Runs the tool with `args` until it exits and returns what it printed on stdout.
    /// Fails, with its stderr, if it exits unsuccessfully.
    pub async fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = tokio::process::Command::new(self.name)
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|error| match error.kind() {
                ErrorKind::NotFound => self.missing(),
                _ => anyhow!(error).context(format!("starting `{}`", self.name)),
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let said = if stderr.trim().is_empty() {
                stdout.trim()
            } else {
                stderr.trim()
            };
            bail!("`{}` {}: {said}", self.name, output.status);
        }
        Ok(stdout)
    }
}

/// `duration` in whole seconds, at least 1: what wrk's `-d` and pgbench's `-T` take.
pub fn whole_seconds(duration: Duration) -> u64 {
    (duration.as_secs_f64().round() as u64).max(1)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A file in the temporary directory holding a script for a tool, removed on drop.
pub struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    /// Writes `contents` to `switchyard-bench-<pid>-<name>` in the temporary directory.
    pub fn write(name: &str, contents: &str) -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("switchyard-bench-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named_with_how_to_install_it() {
        let tool = Tool {
            name: "switchyard-bench-no-such-tool",
            install: "install it with `apt-get install nothing`",
        };
        assert!(!tool.installed());
        let message = tool.require().unwrap_err().to_string();
        assert!(
            message.contains("switchyard-bench-no-such-tool"),
            "{message}"
        );
        assert!(message.contains("apt-get install nothing"), "{message}");
    }

    #[tokio::test]
    async fn running_a_missing_tool_says_how_to_install_it() {
        let tool = Tool {
            name: "switchyard-bench-no-such-tool",
            install: "install it with `apt-get install nothing`",
        };
        let message = tool.run(["--version"]).await.unwrap_err().to_string();
        assert!(message.contains("apt-get install nothing"), "{message}");
    }

    #[test]
    fn durations_are_given_in_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_millis(5_400)), 5);
        assert_eq!(whole_seconds(Duration::from_millis(5_600)), 6);
        assert_eq!(whole_seconds(Duration::from_millis(100)), 1);
    }

    #[test]
    fn a_scratch_file_is_removed_on_drop() {
        let file = ScratchFile::write("test-scratch", "x").unwrap();
        let path = file.path().to_owned();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
        drop(file);
        assert!(!path.exists());
    }
}
