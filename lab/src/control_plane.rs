//! A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC, dual-stack Services, CRD
//! validation and CEL as upstream ships them) and kube-controller-manager (namespace deletion,
//! EndpointSlices, ServiceAccounts, garbage collection), with a fresh PKI and an admin kubeconfig.
//!
//! Exposes [`ControlPlane`] (start one, use it, drop it) and [`shared`] (one per test process).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kubeconfig::{Credentials, client_from_kubeconfig, client_with_timeout, write_kubeconfig};
use crate::pki::Pki;
use crate::process::{Child, LOG_TAIL_LINES, log_tail, spawn_supervised};
use crate::upstream::UpstreamBinaries;
use crate::{LabError, labdir};

/// Set to `1` to keep the lab directory (logs, kubeconfigs, etcd data) after the lab stops.
pub const KEEP_ENV: &str = "PURELB_LAB_KEEP";

/// The issuer and audience of ServiceAccount tokens, as in a kubeadm cluster.
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc";
/// Dual-stack, so tests can create `RequireDualStack` Services.
const SERVICE_CLUSTER_IP_RANGES: &str = "198.18.0.0/16,2001:db8:ffff::/112";

const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Generous: a cold kube-apiserver on a busy 2-core machine takes a while to run its post-start hooks.
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Until kube-controller-manager's ServiceAccount controller has made `default/default`: a few seconds
/// normally, generous for a busy 2-core machine running several labs.
const CONTROLLER_MANAGER_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Every controller kube-controller-manager runs by default except two that assume kubelets: with no
/// kubelet posting node status, the node lifecycle controller would mark every lab Node NotReady and
/// taint it after its grace period (~40 s), and then every pod on it NotReady, which EndpointSlices
/// (and so PureLB's local announcements) follow; node IPAM would hand out pod CIDRs nobody routes.
const CONTROLLER_MANAGER_CONTROLLERS: &str = "*,-nodelifecycle,-nodeipam";
/// Attempts at starting a process whose port another process took between our probe and its bind.
const PORT_ATTEMPTS: usize = 3;
/// How long ServiceAccount tokens written by the lab stay valid.
const TOKEN_LIFETIME_SECONDS: i64 = 24 * 60 * 60;

// === impl ControlPlane ===

/// A running etcd, kube-apiserver and kube-controller-manager and the files to talk to them. Dropping it
/// stops the three processes and removes its directory (unless `PURELB_LAB_KEEP=1`).
///
/// Faults for tests of what happens when the control plane is away: [`ControlPlane::pause_apiserver`]
/// and [`ControlPlane::pause_etcd`] (SIGSTOP, undone by `resume_*`), [`ControlPlane::stop_apiserver`] and
/// [`ControlPlane::stop_etcd`] (SIGKILL, undone by `start_*`, which restart with the same command line,
/// ports and data). They are for a lab the test started itself ([`ControlPlane::start`]), never the
/// [`shared`] one, which other tests of the process are using. kube-controller-manager stays up through
/// them all: like any client it retries until the apiserver answers again.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    upstream: UpstreamBinaries,
    pki: Pki,
    server: String,
    etcd_url: String,
    admin_kubeconfig: PathBuf,
    apiserver: Child,
    etcd: Child,
    controller_manager: Child,
    /// Kept so restarts listen where kubeconfigs, the network's relay and the apiserver point.
    apiserver_port: u16,
    etcd_ports: EtcdPorts,
    /// How many times each was started, naming the restarts' logs (`kube-apiserver-2.log`, ...).
    apiserver_starts: u32,
    etcd_starts: u32,
}

impl ControlPlane {
    /// Builds or locates the upstream binaries (runs `lab/upstream/build.sh`, or uses
    /// `$PURELB_LAB_BIN_DIR`), generates a PKI, starts etcd and kube-apiserver on free 127.0.0.1 ports,
    /// waits for `/readyz`, writes `admin.kubeconfig`, then starts kube-controller-manager and waits until
    /// its controllers act (the `default` ServiceAccount exists).
    pub async fn start() -> Result<ControlPlane, LabError> {
        let began = Instant::now();
        let upstream = tokio::task::spawn_blocking(UpstreamBinaries::locate)
            .await
            .map_err(|e| LabError::io("locating upstream binaries", std::io::Error::other(e)))??;
        labdir::remove_stale();
        let dir = DirGuard(Some(labdir::create()?));
        let pki = Pki::generate(&dir.path().join("pki"))?;

        let (etcd, etcd_ports) = first_start_etcd(&upstream, dir.path()).await?;
        let etcd_url = etcd_ports.client_url();
        let admin_kubeconfig = dir.path().join("admin.kubeconfig");
        let (apiserver, apiserver_port) =
            first_start_apiserver(&upstream, dir.path(), &pki, &etcd, &etcd_url, &admin_kubeconfig).await?;
        let server = apiserver_url(apiserver_port);
        let controller_manager = start_controller_manager(&upstream, dir.path(), &pki, &admin_kubeconfig)?;
        wait_controller_manager_ready(&controller_manager, &apiserver, &admin_kubeconfig).await?;

        let lab = ControlPlane {
            dir: dir.disarm(),
            upstream,
            pki,
            server,
            etcd_url,
            admin_kubeconfig,
            apiserver,
            etcd,
            controller_manager,
            apiserver_port,
            etcd_ports,
            apiserver_starts: 1,
            etcd_starts: 1,
        };
        tracing::info!(dir = %lab.dir.display(), server = %lab.server, elapsed = ?began.elapsed(), "lab control plane ready");
        Ok(lab)
    }

    /// The lab's working directory: kubeconfigs, PKI, etcd data and logs (`etcd.log`,
    /// `kube-apiserver.log`, `kube-controller-manager.log`, `etcd-2.log`, `kube-apiserver-2.log`, ... after
    /// restarts, and one per spawned program).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kubeconfig for `purelb-lab-admin` (group `system:masters`), authenticated by client certificate.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// etcd's client URL, `http://127.0.0.1:<port>`.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The CA that signed the apiserver's serving certificate and the admin's client certificate.
    pub fn ca_cert(&self) -> &Path {
        &self.pki.ca_cert
    }

    /// The kube-apiserver process (the latest one, after restarts).
    pub fn apiserver(&self) -> &Child {
        &self.apiserver
    }

    /// The etcd process (the latest one, after restarts).
    pub fn etcd(&self) -> &Child {
        &self.etcd
    }

    /// The kube-controller-manager process.
    pub fn controller_manager(&self) -> &Child {
        &self.controller_manager
    }

    /// The upstream programs the lab runs (kube-proxy among them, for the network's nodes).
    pub fn upstream(&self) -> &UpstreamBinaries {
        &self.upstream
    }

    /// The upstream `kubectl` of the same version as the apiserver.
    pub fn kubectl(&self) -> &Path {
        &self.upstream.kubectl
    }

    /// A `kubectl` command with `KUBECONFIG` set to the admin kubeconfig.
    pub fn kubectl_command(&self) -> Command {
        let mut command = Command::new(&self.upstream.kubectl);
        command.env("KUBECONFIG", &self.admin_kubeconfig);
        command
    }

    /// A new admin client. Each call builds a new one because a client belongs to the tokio runtime that
    /// made it, and each test has its own runtime.
    pub async fn admin_client(&self) -> Result<kube::Client, LabError> {
        client_from_kubeconfig(&self.admin_kubeconfig).await
    }

    /// Applies every YAML document in the file (server-side apply, field manager `purelb-lab`) as admin.
    pub async fn apply_file(&self, path: &Path) -> Result<(), LabError> {
        crate::apply::apply_file(&self.admin_client().await?, path).await
    }

    /// Applies every document of YAML text as admin; `origin` names it in errors.
    pub async fn apply_yaml(&self, yaml: &str, origin: &str) -> Result<(), LabError> {
        crate::apply::apply_yaml(&self.admin_client().await?, yaml, Path::new(origin)).await
    }

    /// Requests a token for an existing ServiceAccount (creating nothing else) and writes
    /// `<dir>/<namespace>-<name>.kubeconfig` holding it and the CA.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf, LabError> {
        let client = self.admin_client().await?;
        let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client, namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(TOKEN_LIFETIME_SECONDS),
                ..Default::default()
            }),
            ..Default::default()
        };
        let granted =
            accounts.create_token_request(name, &PostParams::default(), &request).await.map_err(|e| {
                LabError::kube(format!("requesting a token for ServiceAccount {namespace}/{name}"), e)
            })?;
        let token = granted.status.and_then(|s| s.token).unwrap_or_default();
        if token.is_empty() {
            return Err(LabError::Kubeconfig {
                path: self.dir.clone(),
                message: format!("the TokenRequest for ServiceAccount {namespace}/{name} returned no token"),
            });
        }
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        let context = format!("system:serviceaccount:{namespace}:{name}");
        write_kubeconfig(&path, &context, &self.server, &self.pki.ca_cert, Credentials::BearerToken(&token))?;
        Ok(path)
    }

    /// Starts `program` as a supervised child of the lab: stdout and stderr go to `<dir>/<log_name>.log`,
    /// `KUBECONFIG` is `kubeconfig`, the working directory is the lab's. The child dies with this process.
    pub fn spawn(
        &self,
        program: &Path,
        args: &[String],
        kubeconfig: &Path,
        log_name: &str,
    ) -> Result<Child, LabError> {
        let mut command = Command::new(program);
        command.args(args).env("KUBECONFIG", kubeconfig).current_dir(&self.dir);
        spawn_supervised(command, log_name, &self.dir.join(format!("{log_name}.log")))
    }

    /// Freezes kube-apiserver (SIGSTOP): its sockets stay open and connections to it stay up, but nothing
    /// answers, as with a hung or partitioned server, until [`ControlPlane::resume_apiserver`].
    pub fn pause_apiserver(&self) -> Result<(), LabError> {
        signal_running(&self.apiserver, Signal::SIGSTOP, "while pausing it")
    }

    /// Lets a paused kube-apiserver run again (SIGCONT).
    pub fn resume_apiserver(&self) -> Result<(), LabError> {
        signal_running(&self.apiserver, Signal::SIGCONT, "while resuming it")
    }

    /// Freezes etcd (SIGSTOP): the apiserver's requests to it hang until [`ControlPlane::resume_etcd`].
    pub fn pause_etcd(&self) -> Result<(), LabError> {
        signal_running(&self.etcd, Signal::SIGSTOP, "while pausing it")
    }

    /// Lets a paused etcd run again (SIGCONT).
    pub fn resume_etcd(&self) -> Result<(), LabError> {
        signal_running(&self.etcd, Signal::SIGCONT, "while resuming it")
    }

    /// [`ControlPlane::stop_apiserver`] then [`ControlPlane::start_apiserver`]: a crash and a restart on
    /// the same port, ready when this returns.
    pub async fn restart_apiserver(&mut self) -> Result<(), LabError> {
        self.stop_apiserver().await?;
        self.start_apiserver().await
    }

    /// Kills kube-apiserver (SIGKILL, paused or not) and reaps it: its connections are reset.
    pub async fn stop_apiserver(&mut self) -> Result<(), LabError> {
        self.apiserver.kill().map(drop)
    }

    /// Starts kube-apiserver again after [`ControlPlane::stop_apiserver`] (or a crash), with the same
    /// flags on the same port, and waits for `/readyz` as the first start does. Each restart logs to a
    /// file of its own: `kube-apiserver-2.log`, `-3`, ... ([`Child::log_path`] of [`ControlPlane::apiserver`]).
    pub async fn start_apiserver(&mut self) -> Result<(), LabError> {
        ensure_stopped(&self.apiserver)?;
        self.apiserver_starts += 1;
        let log = self.dir.join(format!("kube-apiserver-{}.log", self.apiserver_starts));
        let command =
            apiserver_command(&self.upstream, &self.dir, &self.pki, &self.etcd_url, self.apiserver_port);
        self.apiserver = spawn_supervised(command, "kube-apiserver", &log)?;
        wait_apiserver_ready(&self.apiserver, &self.etcd, &self.admin_kubeconfig).await
    }

    /// Kills etcd (SIGKILL) and reaps it; its data directory stays.
    pub async fn stop_etcd(&mut self) -> Result<(), LabError> {
        self.etcd.kill().map(drop)
    }

    /// Starts etcd again after [`ControlPlane::stop_etcd`] with the same flags, ports and data directory
    /// (every object is still there), and waits until it reports itself healthy. Each restart logs to a
    /// file of its own: `etcd-2.log`, `-3`, ...
    pub async fn start_etcd(&mut self) -> Result<(), LabError> {
        ensure_stopped(&self.etcd)?;
        self.etcd_starts += 1;
        let log = self.dir.join(format!("etcd-{}.log", self.etcd_starts));
        self.etcd = spawn_supervised(etcd_command(&self.upstream, &self.dir, self.etcd_ports), "etcd", &log)?;
        wait_etcd_ready(&self.etcd, self.etcd_ports).await
    }

    /// [`ControlPlane::stop_etcd`] then [`ControlPlane::start_etcd`]: a crash and a restart on the same
    /// data, healthy when this returns.
    pub async fn restart_etcd(&mut self) -> Result<(), LabError> {
        self.stop_etcd().await?;
        self.start_etcd().await
    }

    /// Stops the processes and removes (or keeps) the directory. Safe to call more than once.
    fn shut_down(&self, at_exit: bool) {
        // Clients first, so kube-controller-manager does not fill its log with a vanished apiserver.
        for child in [&self.controller_manager, &self.apiserver, &self.etcd] {
            if at_exit {
                child.kill_at_exit();
            } else if let Err(e) = child.kill() {
                tracing::warn!(error = %e, "stopping the lab");
            }
        }
        // Not eprintln!: it panics when stderr is gone, and this also runs in an exit handler.
        let mut stderr = std::io::stderr();
        if keep_requested() {
            let _ = std::fs::write(self.dir.join(labdir::KEPT_MARKER), "kept by PURELB_LAB_KEEP=1\n");
            let _ = writeln!(stderr, "purelb-lab: {KEEP_ENV}=1, keeping {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            let _ = writeln!(stderr, "purelb-lab: could not remove {}: {e}", self.dir.display());
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shut_down(false);
    }
}

/// Sends `signal` to a child that must still be running.
fn signal_running(child: &Child, signal: Signal, during: &str) -> Result<(), LabError> {
    if let Some(status) = child.try_wait()? {
        return Err(child.exited(status, during));
    }
    child.signal(signal);
    Ok(())
}

/// A restart needs the previous process gone: two would fight over the port (and etcd's data).
fn ensure_stopped(child: &Child) -> Result<(), LabError> {
    match child.try_wait()? {
        Some(_) => Ok(()),
        None => Err(LabError::io(
            format!("starting {} again", child.name()),
            std::io::Error::other(format!(
                "{} (pid {}) is still running; stop it first",
                child.name(),
                child.pid()
            )),
        )),
    }
}

fn keep_requested() -> bool {
    std::env::var(KEEP_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Cleans up after a failed start: the logs stay (the error points at them) until a later lab finds the
/// directory stale; etcd's data, the bulk of it, goes unless `PURELB_LAB_KEEP=1`.
struct DirGuard(Option<PathBuf>);

impl DirGuard {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn disarm(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if keep_requested() {
                let _ = std::fs::write(dir.join(labdir::KEPT_MARKER), "kept by PURELB_LAB_KEEP=1\n");
            } else {
                let _ = std::fs::remove_dir_all(dir.join("etcd"));
            }
            eprintln!("purelb-lab: the lab failed to start; its logs are in {}", dir.display());
        }
    }
}

// === etcd ===

/// etcd's two ports on 127.0.0.1, kept for restarts: the apiserver's `--etcd-servers` names the client one.
#[derive(Debug, Clone, Copy)]
struct EtcdPorts {
    client: u16,
    peer: u16,
}

impl EtcdPorts {
    fn client_url(self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }
}

/// The etcd command line, the same for the first start and every restart (on restart the data directory
/// exists, and etcd ignores the `--initial-*` flags).
fn etcd_command(upstream: &UpstreamBinaries, dir: &Path, ports: EtcdPorts) -> Command {
    let client_url = ports.client_url();
    let peer_url = format!("http://127.0.0.1:{}", ports.peer);
    let mut command = Command::new(&upstream.etcd);
    command
        .arg("--name=lab")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=lab={peer_url}"))
        .arg("--initial-cluster-state=new")
        // A throwaway store: durability buys nothing and fsync costs seconds on a busy disk.
        .arg("--unsafe-no-fsync")
        .current_dir(dir);
    command
}

async fn wait_etcd_ready(etcd: &Child, ports: EtcdPorts) -> Result<(), LabError> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.client));
    wait_until_ready(etcd, "etcd", ETCD_READY_TIMEOUT, || etcd_health(address)).await
}

/// The first start: on fresh ports (new ones when another process took them meanwhile).
async fn first_start_etcd(upstream: &UpstreamBinaries, dir: &Path) -> Result<(Child, EtcdPorts), LabError> {
    let log = dir.join("etcd.log");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let [client, peer] = free_ports()?;
        let ports = EtcdPorts { client, peer };
        let etcd = spawn_supervised(etcd_command(upstream, dir, ports), "etcd", &log)?;
        match wait_etcd_ready(&etcd, ports).await {
            Ok(()) => return Ok((etcd, ports)),
            Err(e) if attempt < PORT_ATTEMPTS && port_was_taken(&log) => {
                tracing::warn!(error = %e, "etcd lost its port to another process; retrying with new ports");
                drop(etcd);
                let _ = std::fs::remove_dir_all(dir.join("etcd"));
            }
            Err(e) => return Err(e),
        }
    }
}

/// GET /health on etcd's client port: `Ok` when it reports itself healthy.
async fn etcd_health(address: SocketAddr) -> Result<(), String> {
    let body = tokio::time::timeout(Duration::from_secs(2), http_get(address, "/health"))
        .await
        .map_err(|_| "GET /health: no answer within 2 s".to_owned())?
        .map_err(|e| format!("GET /health: {e}"))?;
    if body.contains(r#""health":"true""#) { Ok(()) } else { Err(format!("GET /health answered {body:?}")) }
}

/// A minimal HTTP/1.0 GET (etcd's health endpoint is plain HTTP on loopback).
async fn http_get(address: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

// === kube-apiserver ===

/// The kube-apiserver command line, the same for the first start and every restart.
fn apiserver_command(
    upstream: &UpstreamBinaries,
    dir: &Path,
    pki: &Pki,
    etcd_url: &str,
    port: u16,
) -> Command {
    let mut command = Command::new(&upstream.kube_apiserver);
    command
        .arg(format!("--etcd-servers={etcd_url}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--secure-port={port}"))
        .arg(format!("--cert-dir={}", dir.join("apiserver").display()))
        .arg(format!("--tls-cert-file={}", pki.apiserver_cert.display()))
        .arg(format!("--tls-private-key-file={}", pki.apiserver_key.display()))
        .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
        .arg("--authorization-mode=RBAC")
        .arg(format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"))
        .arg(format!("--service-account-key-file={}", pki.service_account_pub.display()))
        .arg(format!("--service-account-signing-key-file={}", pki.service_account_key.display()))
        .arg(format!("--api-audiences={SERVICE_ACCOUNT_ISSUER}"))
        .arg(format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGES}"))
        // Nobody else serves the `kubernetes` Service's endpoints here, and a loopback endpoint
        // would be rejected anyway.
        .arg("--endpoint-reconciler-type=none")
        .arg("--profiling=false")
        .current_dir(dir);
    command
}

/// Waits for `/readyz` to answer `ok` (as admin), failing early when the apiserver or etcd exits.
async fn wait_apiserver_ready(
    apiserver: &Child,
    etcd: &Child,
    admin_kubeconfig: &Path,
) -> Result<(), LabError> {
    let probe = client_with_timeout(admin_kubeconfig, Some(Duration::from_secs(5))).await?;
    wait_until_ready(apiserver, "kube-apiserver", APISERVER_READY_TIMEOUT, || {
        let probe = probe.clone();
        async move {
            // etcd dying makes the apiserver hang in retries; say so instead of timing out.
            if let Ok(Some(status)) = etcd.try_wait() {
                return Err(format!("etcd exited ({status}); see {}", etcd.log_path().display()));
            }
            readyz(&probe).await
        }
    })
    .await
}

/// The first start: on a fresh port (a new one when another process took it meanwhile), writing the admin
/// kubeconfig that names it.
async fn first_start_apiserver(
    upstream: &UpstreamBinaries,
    dir: &Path,
    pki: &Pki,
    etcd: &Child,
    etcd_url: &str,
    admin_kubeconfig: &Path,
) -> Result<(Child, u16), LabError> {
    let log = dir.join("kube-apiserver.log");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let [port] = free_ports()?;
        write_kubeconfig(
            admin_kubeconfig,
            "purelb-lab-admin",
            &apiserver_url(port),
            &pki.ca_cert,
            Credentials::ClientCertificate { cert: &pki.admin_cert, key: &pki.admin_key },
        )?;
        let command = apiserver_command(upstream, dir, pki, etcd_url, port);
        let apiserver = spawn_supervised(command, "kube-apiserver", &log)?;
        match wait_apiserver_ready(&apiserver, etcd, admin_kubeconfig).await {
            Ok(()) => return Ok((apiserver, port)),
            Err(e) if attempt < PORT_ATTEMPTS && port_was_taken(&log) => {
                tracing::warn!(error = %e, "kube-apiserver lost its port to another process; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

fn apiserver_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// GET /readyz as admin: `Ok` when the apiserver answers `ok`.
async fn readyz(client: &kube::Client) -> Result<(), String> {
    let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(format!("/readyz answered {body:?}")),
        Err(e) => Err(format!("/readyz: {e}")),
    }
}

// === kube-controller-manager ===

/// Starts kube-controller-manager against the (ready) apiserver. No port retry loop as for etcd and the
/// apiserver: it serves nothing (`--secure-port=0`), so concurrent labs cannot clash.
fn start_controller_manager(
    upstream: &UpstreamBinaries,
    dir: &Path,
    pki: &Pki,
    admin_kubeconfig: &Path,
) -> Result<Child, LabError> {
    let mut command = Command::new(&upstream.kube_controller_manager);
    command
        // The admin (system:masters): in a throwaway lab one identity with every right is simpler than a
        // system:kube-controller-manager certificate, and with --use-service-account-credentials=false
        // every controller acts as it too.
        .arg(format!("--kubeconfig={}", admin_kubeconfig.display()))
        .arg("--use-service-account-credentials=false")
        // Its /healthz and /metrics are not needed (readiness is judged by what its controllers do), and
        // a fixed port (10257) would clash between labs running at once.
        .arg("--secure-port=0")
        .arg("--bind-address=127.0.0.1")
        // One instance per lab: no Lease to win first, and nothing to lose while the apiserver restarts.
        .arg("--leader-elect=false")
        .arg(format!("--controllers={CONTROLLER_MANAGER_CONTROLLERS}"))
        // The token controller signs with the key the apiserver verifies; the CA goes into every
        // namespace's kube-root-ca.crt ConfigMap and into ServiceAccount token Secrets.
        .arg(format!("--service-account-private-key-file={}", pki.service_account_key.display()))
        .arg(format!("--root-ca-file={}", pki.ca_cert.display()))
        .arg("--profiling=false")
        .current_dir(dir);
    spawn_supervised(command, "kube-controller-manager", &dir.join("kube-controller-manager.log"))
}

/// Waits until the ServiceAccount controller has created `default/default`: proof that
/// kube-controller-manager reached the apiserver, synced its informers and runs its controllers.
async fn wait_controller_manager_ready(
    controller_manager: &Child,
    apiserver: &Child,
    admin_kubeconfig: &Path,
) -> Result<(), LabError> {
    let probe = client_with_timeout(admin_kubeconfig, Some(Duration::from_secs(5))).await?;
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(probe, "default");
    wait_until_ready(controller_manager, "kube-controller-manager", CONTROLLER_MANAGER_READY_TIMEOUT, || {
        let accounts = accounts.clone();
        async move {
            if let Ok(Some(status)) = apiserver.try_wait() {
                return Err(format!(
                    "kube-apiserver exited ({status}); see {}",
                    apiserver.log_path().display()
                ));
            }
            match accounts.get_opt("default").await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("ServiceAccount default/default not created yet".to_owned()),
                Err(e) => Err(format!("reading ServiceAccount default/default: {e}")),
            }
        }
    })
    .await
}

// === shared helpers ===

/// Polls `probe` every 100 ms until it succeeds, failing early (with the log's tail) when the process
/// exits and with `NotReady` at the deadline.
async fn wait_until_ready<F, Fut>(
    child: &Child,
    process: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<(), LabError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let began = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(LabError::ProcessExited {
                process: process.to_owned(),
                status,
                during: "before it became ready".to_owned(),
                log: child.log_path().to_owned(),
                tail: child.log_tail(LOG_TAIL_LINES),
            });
        }
        match probe().await {
            Ok(()) => {
                tracing::debug!(process, elapsed = ?began.elapsed(), "ready");
                return Ok(());
            }
            Err(last) if began.elapsed() >= timeout => {
                return Err(LabError::NotReady {
                    process: process.to_owned(),
                    waited: timeout,
                    last,
                    log: child.log_path().to_owned(),
                    tail: child.log_tail(LOG_TAIL_LINES),
                });
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `N` distinct ports on 127.0.0.1 that were free a moment ago (the kernel's picks for ephemeral binds,
/// all held at once so no two are the same).
fn free_ports<const N: usize>() -> Result<[u16; N], LabError> {
    let error = |e| LabError::io("finding a free port on 127.0.0.1", e);
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(error)?;
        *port = listener.local_addr().map_err(error)?.port();
        listeners.push(listener);
    }
    Ok(ports)
}

fn port_was_taken(log: &Path) -> bool {
    log_tail(log, 50).contains("address already in use")
}

// === shared() ===

static SHARED: tokio::sync::OnceCell<Result<ControlPlane, String>> = tokio::sync::OnceCell::const_new();

/// The control plane shared by all tests of this process, started on first use. It is started on its
/// own thread and runtime, so nothing in it belongs to the test that happened to ask first; it is stopped
/// and its directory removed when the process exits.
///
/// Panics (failing the calling test) with the reason when the lab cannot start; see [`try_shared`].
pub async fn shared() -> &'static ControlPlane {
    match try_shared().await {
        Ok(lab) => lab,
        Err(e) => panic!("{e}"),
    }
}

/// Like [`shared`], returning the start failure instead of panicking.
pub async fn try_shared() -> Result<&'static ControlPlane, LabError> {
    let started = SHARED
        .get_or_init(|| async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let thread = std::thread::Builder::new().name("purelb-lab-start".to_owned()).spawn(move || {
                let started = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| LabError::io("building a runtime to start the lab", e))
                    .and_then(|runtime| runtime.block_on(ControlPlane::start()));
                let _ = tx.send(started);
            });
            if let Err(e) = thread {
                return Err(format!("could not start a thread to start the lab: {e}"));
            }
            match rx.await {
                Ok(Ok(lab)) => {
                    stop_shared_at_exit();
                    Ok(lab)
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the thread starting the lab died (see its panic above)".to_owned()),
            }
        })
        .await;
    started.as_ref().map_err(|e| LabError::Shared(e.clone()))
}

/// Statics are never dropped, so the shared lab is stopped by an exit handler; the children would die with
/// the process anyway (PDEATHSIG), this also removes the directory.
fn stop_shared_at_exit() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| register_at_exit(stop_shared));
}

extern "C" fn stop_shared() {
    if let Some(Ok(lab)) = SHARED.get() {
        lab.shut_down(true);
    }
}

#[allow(unsafe_code)]
fn register_at_exit(handler: extern "C" fn()) {
    // SAFETY: `atexit` only stores the pointer to a plain `extern "C" fn` with no captured state; the
    // handler (`stop_shared`) touches only a static and never unwinds across the C boundary: it panics
    // nowhere (errors are printed) and takes no lock that could be held at exit (`kill_at_exit`).
    let registered = unsafe { libc::atexit(handler) };
    if registered != 0 {
        tracing::warn!("could not register the shared lab's exit handler; its directory will be left behind");
    }
}
