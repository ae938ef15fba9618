//! The worker processes of a run: spawning them over the nodes, their ready
//! message, the `finish` command and their results (client.rs is the worker side).

use super::*;

pub(super) struct WorkerHandle {
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
    pub(super) lines: Lines<BufReader<ChildStdout>>,
    pub(super) first_index: usize,
    pub(super) conns: usize,
    /// Index of its node in `ws_urls`.
    pub(super) node: usize,
    /// Handshakes that succeeded, from the worker's ready message.
    pub(super) connected: u64,
}

impl WorkerHandle {
    /// Starts `exe` with `args` as the worker of clients `first_index ..
    /// first_index + conns` on node `node`, its stdin and stdout piped to us.
    pub(super) fn spawn(
        exe: &std::path::Path,
        args: Vec<String>,
        first_index: usize,
        conns: usize,
        node: usize,
    ) -> Result<WorkerHandle> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        Ok(WorkerHandle {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            first_index,
            conns,
            node,
            connected: 0,
        })
    }

    /// Read stdout lines until one of JSON type `ty` arrives.
    pub(super) async fn read_msg<T: DeserializeOwned>(
        &mut self,
        ty: &str,
        timeout: Duration,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .with_context(|| format!("worker sent no {ty:?} within {timeout:?}"))??
                .with_context(|| format!("worker exited before sending {ty:?}"))?;
            let v: serde_json::Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue, // not ours; workers only print JSON, but be lenient
            };
            if v.get("type").and_then(|t| t.as_str()) == Some(ty) {
                return Ok(serde_json::from_value(v)?);
            }
        }
    }

    pub(super) async fn finish(
        &mut self,
        expected: u64,
        quiet_ms: u64,
        deadline_ms: u64,
    ) -> Result<()> {
        let cmd = format!("finish {expected} {quiet_ms} {deadline_ms}\n");
        self.stdin.write_all(cmd.as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub(super) async fn reap(mut self) {
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

impl RunConfig {
    pub(super) fn ready_timeout(&self, conns: usize) -> Duration {
        let rounds = conns / self.handshake_concurrency.max(1) + 2;
        Duration::from_secs((self.connect_timeout_s * rounds as u64).clamp(30, 900))
    }

    pub(super) fn worker_args(
        &self,
        ws: &str,
        first_index: usize,
        conns: usize,
        max_seq: usize,
        no_read: bool,
    ) -> Vec<String> {
        let mut a = vec![
            "worker".to_string(),
            "--ws".into(),
            ws.to_string(),
            "--conns".into(),
            conns.to_string(),
            "--first-index".into(),
            first_index.to_string(),
            "--max-seq".into(),
            max_seq.to_string(),
            "--size".into(),
            self.size.max(payload::MIN_SIZE).to_string(),
            "--handshake-concurrency".into(),
            self.handshake_concurrency.to_string(),
            "--connect-timeout".into(),
            self.connect_timeout_s.to_string(),
        ];
        if no_read {
            a.push("--no-read".into());
        }
        if self.deflate {
            a.push("--deflate".into());
        }
        if self.pusher.is_some() {
            a.push("--pusher".into());
        }
        if self.scenario.subscribes() {
            a.extend([
                "--channels".into(),
                self.channels.to_string(),
                "--channels-per-conn".into(),
                self.channels_per_conn.to_string(),
            ]);
        }
        a
    }

    /// Split `total` connections starting at `first_index` evenly over the
    /// nodes (`ws_urls`), and each node's share over enough worker processes
    /// to stay under the open-files limit.
    pub(super) fn spawn_workers(
        &self,
        first_index: usize,
        total: usize,
        max_seq: usize,
        no_read: bool,
    ) -> Result<Vec<WorkerHandle>> {
        let nodes = self.ws_urls.len().max(1);
        let mut plan = Vec::new();
        for k in 0..nodes {
            let share = total / nodes + usize::from(k < total % nodes);
            if share == 0 && !(k == 0 && total == 0) {
                continue;
            }
            let n = share
                .div_ceil(self.per_worker.max(1))
                .max(self.min_workers.div_ceil(nodes))
                .max(1)
                .min(share.max(1));
            for i in 0..n {
                plan.push((k, share / n + usize::from(i < share % n)));
            }
        }
        let exe = std::env::current_exe()?;
        let mut out = Vec::with_capacity(plan.len());
        let mut idx = first_index;
        for (node, conns) in plan {
            let ws = self.ws_urls.get(node).unwrap_or(&self.ws);
            let args = self.worker_args(ws, idx, conns, max_seq, no_read);
            out.push(WorkerHandle::spawn(&exe, args, idx, conns, node)?);
            idx += conns;
        }
        Ok(out)
    }

    pub(super) async fn wait_ready(&self, workers: &mut [WorkerHandle]) -> Result<Ready> {
        let mut total = Ready::default();
        for w in workers.iter_mut() {
            let r: Ready = w.read_msg("ready", self.ready_timeout(w.conns)).await?;
            w.connected = r.connected;
            total.connected += r.connected;
            total.failed += r.failed;
            total.cpu_ns += r.cpu_ns;
            total.rss_growth_kb += r.rss_growth_kb;
            for e in r.errors {
                if !total.errors.contains(&e) {
                    total.errors.push(e);
                }
            }
        }
        Ok(total)
    }
}
