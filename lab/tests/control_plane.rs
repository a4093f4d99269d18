//! The lab's control plane, for real: etcd, kube-apiserver and kube-controller-manager processes on
//! loopback.
//!
//! Never skipped: a missing prerequisite (Go, the upstream binaries) fails these tests with the reason.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Node, Pod, PodSpec, Secret, Service, ServiceAccount, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use purelb_lab::{ControlPlane, TestNamespace, client_from_kubeconfig, wait_for};

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), namespace: Some(namespace.to_owned()), ..Default::default() }
}

fn is_forbidden<T>(result: &kube::Result<T>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test]
async fn control_plane_starts_and_is_ready() -> Result<()> {
    let began = Instant::now();
    let lab = purelb_lab::try_shared().await?;
    eprintln!("shared control plane available after {:?} at {}", began.elapsed(), lab.server_url());

    let client = lab.admin_client().await?;
    let readyz = client.request_text(http::Request::get("/readyz").body(Vec::new())?).await?;
    ensure!(readyz == "ok", "/readyz answered {readyz:?}");
    let version = client.apiserver_version().await?;
    ensure!(version.git_version == "v1.36.3", "unexpected apiserver version {}", version.git_version);

    for log in ["etcd.log", "kube-apiserver.log", "kube-controller-manager.log"] {
        ensure!(lab.dir().join(log).is_file(), "{log} missing in {}", lab.dir().display());
    }
    ensure!(lab.etcd().is_running() && lab.apiserver().is_running() && lab.controller_manager().is_running());
    Ok(())
}

#[tokio::test]
async fn admin_creates_and_cleans_up_a_namespace() -> Result<()> {
    let lab = purelb_lab::try_shared().await?;
    let client = lab.admin_client().await?;
    let ns = TestNamespace::new(&client, "admin").await?;
    let name = ns.name().to_owned();
    ensure!(name.starts_with("admin-"), "unexpected namespace name {name}");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    ensure!(namespaces.get_opt(&name).await?.is_some(), "namespace {name} not found after creation");
    // Content, one piece of it held by a finalizer that nobody will ever remove.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    let stuck =
        ObjectMeta { finalizers: Some(vec!["lab.purelb.io/stuck".to_owned()]), ..meta("stuck", &name) };
    for metadata in [meta("content", &name), stuck] {
        maps.create(&PostParams::default(), &ConfigMap { metadata, ..Default::default() }).await?;
    }

    // The namespace controller would wait forever on the stuck finalizer: cleanup removes it.
    ns.cleanup().await?;
    ensure!(namespaces.get_opt(&name).await?.is_none(), "namespace {name} still exists after cleanup");
    let everywhere: Api<ConfigMap> = Api::all(client.clone());
    let left = everywhere.list(&ListParams::default().fields(&format!("metadata.namespace={name}"))).await?;
    ensure!(left.items.is_empty(), "objects left in deleted namespace {name}: {:?}", left.items);
    Ok(())
}

#[tokio::test]
async fn service_account_tokens_are_authenticated_and_subject_to_rbac() -> Result<()> {
    let lab = purelb_lab::try_shared().await?;
    let admin = lab.admin_client().await?;
    let ns = TestNamespace::new(&admin, "rbac").await?;
    let name = ns.name();

    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), name);
    accounts
        .create(
            &PostParams::default(),
            &ServiceAccount { metadata: meta("reader", name), ..Default::default() },
        )
        .await?;
    let kubeconfig = lab.service_account_kubeconfig(name, "reader").await?;
    ensure!(
        kubeconfig == lab.dir().join(format!("{name}-reader.kubeconfig")),
        "kubeconfig at {kubeconfig:?}"
    );
    let reader = client_from_kubeconfig(&kubeconfig).await?;

    // Authenticated as the ServiceAccount...
    let review = Api::<SelfSubjectReview>::all(reader.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .context("SelfSubjectReview with the ServiceAccount token")?;
    let username = review.status.and_then(|s| s.user_info).and_then(|u| u.username).unwrap_or_default();
    ensure!(username == format!("system:serviceaccount:{name}:reader"), "authenticated as {username:?}");

    // ...and forbidden until a Role allows it: RBAC is enforced.
    let secrets: Api<Secret> = Api::namespaced(reader.clone(), name);
    let before = secrets.list(&ListParams::default()).await;
    ensure!(is_forbidden(&before), "listing secrets without a Role: expected 403, got {before:?}");

    Api::<Role>::namespaced(admin.clone(), name)
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta("secret-reader", name),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["secrets".to_owned()]),
                    verbs: vec!["get".to_owned(), "list".to_owned()],
                    ..Default::default()
                }]),
            },
        )
        .await?;
    Api::<RoleBinding>::namespaced(admin.clone(), name)
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: meta("secret-reader", name),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".to_owned()),
                    kind: "Role".to_owned(),
                    name: "secret-reader".to_owned(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".to_owned(),
                    name: "reader".to_owned(),
                    namespace: Some(name.to_owned()),
                    ..Default::default()
                }]),
            },
        )
        .await?;
    wait_for("the RoleBinding to allow listing secrets", Duration::from_secs(10), || async {
        secrets.list(&ListParams::default()).await.map(|_| ())
    })
    .await?;

    // The Role is namespaced: other namespaces stay forbidden.
    let elsewhere = Api::<Secret>::namespaced(reader, "default").list(&ListParams::default()).await;
    ensure!(is_forbidden(&elsewhere), "listing secrets in default: expected 403, got {elsewhere:?}");

    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn require_dual_stack_load_balancer_service_is_accepted() -> Result<()> {
    let lab = purelb_lab::try_shared().await?;
    let admin = lab.admin_client().await?;
    let ns = TestNamespace::new(&admin, "dualstack").await?;
    let services: Api<Service> = Api::namespaced(admin.clone(), ns.name());
    let service = Service {
        metadata: meta("echo", ns.name()),
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".to_owned()),
            ip_family_policy: Some("RequireDualStack".to_owned()),
            ip_families: Some(vec!["IPv4".to_owned(), "IPv6".to_owned()]),
            selector: Some([("app".to_owned(), "echo".to_owned())].into()),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = services.create(&PostParams::default(), &service).await.context("creating the Service")?;
    let spec = created.spec.context("Service without spec")?;
    let ips = spec.cluster_ips.unwrap_or_default();
    ensure!(ips.len() == 2, "expected two cluster IPs, got {ips:?}");
    ensure!(ips[0].starts_with("198.18."), "IPv4 cluster IP {} outside 198.18.0.0/16", ips[0]);
    ensure!(ips[1].starts_with("2001:db8:ffff::"), "IPv6 cluster IP {} outside 2001:db8:ffff::/112", ips[1]);
    let node_port = spec.ports.unwrap_or_default().first().and_then(|p| p.node_port);
    ensure!(node_port.is_some(), "a LoadBalancer Service gets a node port");
    ns.cleanup().await?;
    Ok(())
}

/// A CRD with a CEL rule, an object of it and a ConfigMap, in one multi-document file.
const MANIFEST: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.lab.purelb.io
spec:
  group: lab.purelb.io
  names: { kind: Widget, plural: widgets, singular: widget }
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: { type: integer }
              x-kubernetes-validations:
                - rule: "self.size <= 10"
                  message: "size must be at most 10"
---
apiVersion: lab.purelb.io/v1
kind: Widget
metadata: { name: small, namespace: NAMESPACE }
spec: { size: 3 }
---
# an empty document and a comment are fine
---
apiVersion: v1
kind: ConfigMap
metadata: { name: settings, namespace: NAMESPACE }
data: { color: blue }
"#;

#[tokio::test]
async fn apply_file_applies_every_document_and_cel_is_enforced() -> Result<()> {
    let lab = purelb_lab::try_shared().await?;
    let admin = lab.admin_client().await?;
    let ns = TestNamespace::new(&admin, "apply").await?;
    let path = lab.dir().join(format!("{}-manifest.yaml", ns.name()));
    std::fs::write(&path, MANIFEST.replace("NAMESPACE", ns.name()))?;

    lab.apply_file(&path).await?;
    lab.apply_file(&path).await.context("applying the same file twice")?;

    let widget = ApiResource::from_gvk(&GroupVersionKind::gvk("lab.purelb.io", "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns.name(), &widget);
    let small = widgets.get("small").await?;
    ensure!(small.data["spec"]["size"] == 3, "widget {:?}", small.data);
    let settings = Api::<ConfigMap>::namespaced(admin.clone(), ns.name()).get("settings").await?;
    ensure!(settings.data.unwrap_or_default().get("color").map(String::as_str) == Some("blue"));
    let managers: Vec<String> =
        small.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|f| f.manager).collect();
    ensure!(managers.contains(&purelb_lab::FIELD_MANAGER.to_owned()), "field managers {managers:?}");

    // CEL validation is on: the CRD's rule rejects a big widget, and the error names the document.
    let big = format!(
        "apiVersion: lab.purelb.io/v1\nkind: Widget\nmetadata: {{ name: big, namespace: {} }}\nspec: {{ size: 11 }}\n",
        ns.name()
    );
    match lab.apply_yaml(&big, "big-widget.yaml").await {
        Err(e) if e.to_string().contains("size must be at most 10") => {}
        other => bail!("expected the CEL rule to reject the widget, got {other:?}"),
    }
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn children_outlive_the_thread_that_spawned_them_and_log_to_the_lab() -> Result<()> {
    let lab = purelb_lab::try_shared().await?;
    // PDEATHSIG fires when the forking thread exits: spawn from a thread that ends at once.
    let child = std::thread::spawn(move || {
        let script = ["-c".to_owned(), "echo kubeconfig=$KUBECONFIG; exec sleep 60".to_owned()];
        lab.spawn(Path::new("/bin/sh"), &script, lab.admin_kubeconfig(), "sleeper")
    })
    .join()
    .map_err(|_| anyhow::anyhow!("spawning thread panicked"))??;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(child.is_running(), "child died with its spawning thread: {}", child.log_tail(20));
    ensure!(child.log_path() == lab.dir().join("sleeper.log"));
    let expected = format!("kubeconfig={}", lab.admin_kubeconfig().display());
    wait_for("the child's output in its log", Duration::from_secs(5), || async {
        let log = std::fs::read_to_string(child.log_path()).unwrap_or_default();
        log.contains(&expected).then_some(())
    })
    .await?;

    let status = child.terminate().await?;
    ensure!(!child.is_running());
    ensure!(!status.success(), "sleep ended by SIGTERM reports failure, got {status}");
    Ok(())
}

#[tokio::test]
async fn dropping_a_lab_leaves_no_processes_and_no_directory() -> Result<()> {
    // A directory of a lab whose owner (a pid above any pid_max) is dead: starting a lab removes it.
    let stale = purelb_lab_root().join("lab-4194305-1-0");
    std::fs::create_dir_all(&stale)?;

    let began = Instant::now();
    let lab = ControlPlane::start().await?;
    eprintln!("private control plane started in {:?}", began.elapsed());
    ensure!(!stale.exists(), "stale lab directory {} was not removed", stale.display());

    let pids = [lab.etcd().pid(), lab.apiserver().pid(), lab.controller_manager().pid()];
    let dir = lab.dir().to_owned();
    for pid in pids {
        ensure!(Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} not running before drop");
    }
    drop(lab);

    for pid in pids {
        ensure!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still exists after drop");
    }
    let leftovers = processes_mentioning(&dir.to_string_lossy())?;
    ensure!(leftovers.is_empty(), "processes still using {}: {leftovers:?}", dir.display());
    if std::env::var_os(purelb_lab::KEEP_ENV).is_none() {
        ensure!(!dir.exists(), "lab directory {} left behind", dir.display());
    }
    Ok(())
}

#[tokio::test]
async fn killing_the_test_process_kills_its_lab() -> Result<()> {
    // A test process that starts a lab and a child, then dies by SIGKILL: no Drop, no exit handler runs.
    let scratch = std::env::temp_dir().join(format!("purelb-lab-helper-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let report = scratch.join("report");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_purelb-lab-fixture"));
    command.arg(&report);
    let helper = purelb_lab::spawn_supervised(command, "helper", &scratch.join("helper.log"))?;

    let line = wait_for("the helper to report its lab", Duration::from_secs(120), || async {
        if !helper.is_running() {
            return Err(format!("helper exited: {}", helper.log_tail(20)));
        }
        std::fs::read_to_string(&report).map_err(|e| e.to_string())
    })
    .await?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    ensure!(fields.len() == 4, "unexpected report {line:?}");
    let pids: Vec<u32> = fields[..3].iter().map(|p| p.parse()).collect::<Result<_, _>>()?;
    let dir = PathBuf::from(fields[3]);
    ensure!(pids.iter().all(|&pid| is_alive(pid)), "lab processes {pids:?} not all running");

    helper.kill()?;
    let survivors =
        wait_for("the lab's processes to die with the test process", Duration::from_secs(10), || {
            let alive: Vec<u32> = pids.iter().copied().filter(|&pid| is_alive(pid)).collect();
            async move { if alive.is_empty() { Ok(()) } else { Err(format!("still alive: {alive:?}")) } }
        })
        .await;
    // The fixture does not report kube-controller-manager's pid; its command line names the lab's dir.
    let needle = dir.to_string_lossy().into_owned();
    let strays = wait_for("no process to name the dead lab's directory", Duration::from_secs(10), || {
        let found = processes_mentioning(&needle);
        async move {
            match found {
                Ok(found) if found.is_empty() => Ok(()),
                Ok(found) => Err(format!("still running: {found:?}")),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&scratch);
    survivors?;
    strays?;
    Ok(())
}

/// Whether a process exists and is not a zombie (a killed orphan may wait for a reaper that never comes).
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

fn purelb_lab_root() -> PathBuf {
    std::env::var_os(purelb_lab::LAB_ROOT_ENV)
        .map_or_else(|| PathBuf::from(purelb_lab::DEFAULT_LAB_ROOT), PathBuf::from)
}

/// `pid: command line` of every process whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    Ok(found)
}

/// `/readyz` through `client`, given at most `within`.
async fn readyz_within(client: &kube::Client, within: Duration) -> Result<String> {
    let request = http::Request::get("/readyz").body(Vec::new())?;
    let answer = tokio::time::timeout(within, client.request_text(request))
        .await
        .with_context(|| format!("/readyz: no answer within {within:?}"))?;
    Ok(answer?)
}

/// The state letter of a process in /proc (`T` when stopped by a signal).
fn process_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().next().map(str::to_owned)
}

#[tokio::test]
async fn a_paused_apiserver_answers_nothing_until_it_is_resumed() -> Result<()> {
    let lab = ControlPlane::start().await?;
    let client = lab.admin_client().await?;
    ensure!(readyz_within(&client, Duration::from_secs(10)).await? == "ok");

    lab.pause_apiserver()?;
    // SIGSTOP is delivered asynchronously, to every thread of the process.
    let pid = lab.apiserver().pid();
    wait_for("kube-apiserver to be stopped (state T)", Duration::from_secs(5), || async move {
        let state = process_state(pid);
        if state.as_deref() == Some("T") { Ok(()) } else { Err(format!("state {state:?}")) }
    })
    .await?;
    let paused = readyz_within(&client, Duration::from_secs(2)).await;
    ensure!(paused.is_err(), "a paused apiserver answered /readyz: {paused:?}");
    let fresh = lab.admin_client().await?;
    let paused = readyz_within(&fresh, Duration::from_secs(2)).await;
    ensure!(paused.is_err(), "a paused apiserver answered a new client: {paused:?}");

    lab.resume_apiserver()?;
    let resumed = readyz_within(&client, Duration::from_secs(10)).await?;
    ensure!(resumed == "ok", "after resume /readyz answered {resumed:?}");
    ensure!(lab.apiserver().is_running());
    Ok(())
}

#[tokio::test]
async fn a_restarted_apiserver_serves_the_same_url_with_the_objects_from_before() -> Result<()> {
    let mut lab = ControlPlane::start().await?;
    let (url, first_pid) = (lab.server_url().to_owned(), lab.apiserver().pid());
    let maps: Api<ConfigMap> = Api::namespaced(lab.admin_client().await?, "default");
    let metadata = meta("before-restart", "default");
    maps.create(&PostParams::default(), &ConfigMap { metadata, ..Default::default() }).await?;

    lab.stop_apiserver().await?;
    ensure!(!lab.apiserver().is_running(), "kube-apiserver still running after stop");
    let client = lab.admin_client().await?;
    let down = readyz_within(&client, Duration::from_secs(5)).await;
    ensure!(down.is_err(), "a stopped apiserver answered /readyz: {down:?}");
    ensure!(lab.start_apiserver().await.is_ok(), "start after stop failed");
    let again = lab.start_apiserver().await;
    ensure!(again.is_err(), "a second start while running was accepted");

    ensure!(lab.server_url() == url, "the URL changed: {url} -> {}", lab.server_url());
    ensure!(lab.apiserver().pid() != first_pid && lab.apiserver().is_running());
    ensure!(lab.dir().join("kube-apiserver-2.log").is_file(), "the restart's log is missing");
    // The client made before the restart reconnects; the object is still there.
    let found = maps.get_opt("before-restart").await?;
    ensure!(found.is_some(), "the ConfigMap created before the restart is gone");

    // kube-controller-manager lived through it and works again: a new namespace gets its ServiceAccount.
    let kcm = lab.controller_manager();
    ensure!(kcm.is_running(), "kube-controller-manager died with the apiserver: {}", kcm.log_tail(20));
    let admin = lab.admin_client().await?;
    let ns = TestNamespace::new(&admin, "after-restart").await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns.name());
    // The controllers' watches reconnect with a backoff of up to ~30 s.
    wait_for(
        "kube-controller-manager to create the default ServiceAccount",
        Duration::from_secs(90),
        || async {
            accounts.get_opt("default").await.map_err(|e| e.to_string())?.ok_or_else(|| "not yet".to_owned())
        },
    )
    .await
    .with_context(|| format!("kube-controller-manager's log: {}", kcm.log_tail(20)))?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_restarted_etcd_keeps_its_data() -> Result<()> {
    let mut lab = ControlPlane::start().await?;
    let maps: Api<ConfigMap> = Api::namespaced(lab.admin_client().await?, "default");
    let metadata = meta("before-etcd-restart", "default");
    maps.create(&PostParams::default(), &ConfigMap { metadata, ..Default::default() }).await?;

    lab.stop_etcd().await?;
    ensure!(!lab.etcd().is_running(), "etcd still running after stop");
    let metadata = meta("while-etcd-is-down", "default");
    let (params, map) = (PostParams::default(), ConfigMap { metadata, ..Default::default() });
    let down = tokio::time::timeout(Duration::from_secs(5), maps.create(&params, &map)).await;
    ensure!(!matches!(down, Ok(Ok(_))), "a write succeeded with etcd down");

    lab.start_etcd().await?;
    ensure!(lab.dir().join("etcd-2.log").is_file(), "the restart's log is missing");
    let found = wait_for("the apiserver to read the ConfigMap again", Duration::from_secs(60), || async {
        maps.get_opt("before-etcd-restart").await.map_err(|e| e.to_string())
    })
    .await?;
    ensure!(found.is_some(), "the ConfigMap created before etcd's restart is gone");
    let metadata = meta("after-etcd-restart", "default");
    maps.create(&PostParams::default(), &ConfigMap { metadata, ..Default::default() }).await?;
    Ok(())
}

#[tokio::test]
async fn a_paused_etcd_holds_writes_until_it_is_resumed() -> Result<()> {
    let lab = ControlPlane::start().await?;
    let maps: Api<ConfigMap> = Api::namespaced(lab.admin_client().await?, "default");

    lab.pause_etcd()?;
    // SIGSTOP is delivered asynchronously; a busy etcd (kube-controller-manager's watches keep it so)
    // can still show `R` or `S` for a moment.
    let pid = lab.etcd().pid();
    wait_for("etcd to be stopped (state T)", Duration::from_secs(5), || async move {
        let state = process_state(pid);
        if state.as_deref() == Some("T") { Ok(()) } else { Err(format!("state {state:?}")) }
    })
    .await?;
    let (params, map) = (
        PostParams::default(),
        ConfigMap { metadata: meta("while-paused", "default"), ..Default::default() },
    );
    let paused = tokio::time::timeout(Duration::from_secs(3), maps.create(&params, &map)).await;
    ensure!(!matches!(paused, Ok(Ok(_))), "a write succeeded with etcd paused");

    lab.resume_etcd()?;
    ensure!(lab.etcd().is_running(), "etcd exited after resume");
    wait_for("a write to succeed after etcd resumed", Duration::from_secs(60), || async {
        let metadata = meta("after-etcd-resumed", "default");
        match maps.create(&PostParams::default(), &ConfigMap { metadata, ..Default::default() }).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;
    ensure!(maps.get_opt("after-etcd-resumed").await?.is_some(), "the write after resume is not there");
    Ok(())
}

#[tokio::test]
async fn a_deleted_namespace_is_emptied_and_removed_by_the_namespace_controller() -> Result<()> {
    let lab = purelb_lab::try_shared().await?;
    let admin = lab.admin_client().await?;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let created = namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta { generate_name: Some("deleted-".to_owned()), ..Default::default() },
                ..Default::default()
            },
        )
        .await?;
    let name = created.metadata.name.context("created namespace without a name")?;
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &name);
    maps.create(
        &PostParams::default(),
        &ConfigMap { metadata: meta("content", &name), ..Default::default() },
    )
    .await?;

    // A plain delete, as `kubectl delete namespace` does: nothing of the lab's own cleanup helps here, the
    // namespace controller has to empty it and drop the `kubernetes` finalizer.
    namespaces.delete(&name, &DeleteParams::default()).await?;
    wait_for(&format!("namespace {name} to finish deleting"), Duration::from_secs(60), || async {
        match namespaces.get_opt(&name).await {
            Ok(None) => Ok(()),
            Ok(Some(ns)) => Err(format!("still there: {:?}", ns.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .with_context(|| format!("kube-controller-manager's log: {}", lab.controller_manager().log_tail(20)))?;
    let everywhere: Api<ConfigMap> = Api::all(admin);
    let left = everywhere.list(&ListParams::default().fields(&format!("metadata.namespace={name}"))).await?;
    ensure!(left.items.is_empty(), "objects left in deleted namespace {name}: {:?}", left.items);
    Ok(())
}

#[tokio::test]
async fn a_ready_pod_behind_a_service_gets_an_endpoint_slice_from_the_controller() -> Result<()> {
    let lab = purelb_lab::try_shared().await?;
    let admin = lab.admin_client().await?;
    let ns = TestNamespace::new(&admin, "slices").await?;
    let name = ns.name();
    // Cluster-scoped and shared with every test of the process: named after the namespace to be unique.
    let node_name = format!("{name}-node");
    let nodes: Api<Node> = Api::all(admin.clone());
    nodes
        .create(
            &PostParams::default(),
            &Node {
                metadata: ObjectMeta { name: Some(node_name.clone()), ..Default::default() },
                ..Default::default()
            },
        )
        .await?;

    let labels: std::collections::BTreeMap<String, String> = [("app".to_owned(), "echo".to_owned())].into();
    let services: Api<Service> = Api::namespaced(admin.clone(), name);
    services
        .create(
            &PostParams::default(),
            &Service {
                metadata: meta("echo", name),
                spec: Some(ServiceSpec {
                    selector: Some(labels.clone()),
                    ports: Some(vec![ServicePort {
                        port: 80,
                        target_port: Some(IntOrString::Int(8080)),
                        protocol: Some("TCP".to_owned()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;

    // What a scheduler and a kubelet would do: bind the pod to the node and report it running and ready.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), name);
    pods.create(
        &PostParams::default(),
        &Pod {
            metadata: ObjectMeta { labels: Some(labels), ..meta("echo-0", name) },
            spec: Some(PodSpec {
                node_name: Some(node_name.clone()),
                containers: vec![Container {
                    name: "echo".to_owned(),
                    // Never pulled: no kubelet runs.
                    image: Some("registry.invalid/echo:lab".to_owned()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await?;
    let status = serde_json::json!({
        "status": {
            "phase": "Running",
            "podIP": "198.18.0.10",
            "podIPs": [{ "ip": "198.18.0.10" }],
            "conditions": [{ "type": "Ready", "status": "True" }],
        },
    });
    pods.patch_status("echo-0", &PatchParams::default(), &Patch::Merge(&status)).await?;

    let slices: Api<EndpointSlice> = Api::namespaced(admin.clone(), name);
    let by_service = ListParams::default().labels("kubernetes.io/service-name=echo");
    let slice = wait_for("the EndpointSlice controller to list the pod", Duration::from_secs(60), || async {
        let listed = slices.list(&by_service).await.map_err(|e| e.to_string())?;
        let summary = format!("{:?}", listed.items.iter().map(|s| &s.endpoints).collect::<Vec<_>>());
        listed
            .items
            .into_iter()
            .find(|s| s.endpoints.iter().flatten().any(|e| e.addresses.iter().any(|a| a == "198.18.0.10")))
            .ok_or(summary)
    })
    .await
    .with_context(|| format!("kube-controller-manager's log: {}", lab.controller_manager().log_tail(20)))?;

    let managed_by =
        slice.metadata.labels.unwrap_or_default().get("endpointslice.kubernetes.io/managed-by").cloned();
    ensure!(
        managed_by.as_deref() == Some("endpointslice-controller.k8s.io"),
        "slice managed by {managed_by:?}"
    );
    ensure!(slice.address_type == "IPv4", "address type {}", slice.address_type);
    let endpoint = slice
        .endpoints
        .iter()
        .flatten()
        .find(|e| e.addresses.iter().any(|a| a == "198.18.0.10"))
        .context("the endpoint vanished")?;
    let ready = endpoint.conditions.as_ref().and_then(|c| c.ready);
    ensure!(ready == Some(true), "endpoint conditions {:?}", endpoint.conditions);
    ensure!(
        endpoint.node_name.as_deref() == Some(node_name.as_str()),
        "endpoint on {:?}",
        endpoint.node_name
    );
    let ports: Vec<Option<i32>> = slice.ports.unwrap_or_default().iter().map(|p| p.port).collect();
    ensure!(ports == [Some(8080)], "slice ports {ports:?}");

    ns.cleanup().await?;
    nodes.delete(&node_name, &DeleteParams::default()).await?;
    Ok(())
}

/// The daemons' event publisher (`purelb_runtime::Publisher`) against the real API server: a repeat is
/// a count on the first Event (`series`, which the API server validates), another note is a new Event,
/// and a repeat of an Event deleted meanwhile is a new one.
#[tokio::test]
async fn a_repeated_event_is_a_series_on_the_first_and_a_new_note_a_new_event() -> Result<()> {
    use k8s_openapi::api::events::v1::Event;
    let lab = purelb_lab::try_shared().await?;
    let client = lab.admin_client().await?;
    let ns = TestNamespace::new(&client, "events").await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let object = maps
        .create(&PostParams::default(), &ConfigMap { metadata: meta("web", ns.name()), ..Default::default() })
        .await?;
    let regarding = kube::Resource::object_ref(&object, &());
    let publisher = purelb_runtime::Publisher::new(client.clone(), "purelb-test", "node-a");
    let ev = |note: &str| purelb_runtime::events::event(false, "IPAllocated", note.to_owned(), "Allocate");
    let events: Api<Event> = Api::namespaced(client.clone(), ns.name());
    let listed = || async {
        let mut l: Vec<(String, Option<i32>, String)> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|e| {
                (e.note.unwrap_or_default(), e.series.map(|s| s.count), e.metadata.name.unwrap_or_default())
            })
            .collect();
        l.sort();
        anyhow::Ok(l)
    };

    for _ in 0..3 {
        publisher.publish(&ev("Assigned IP 192.0.2.1 from pool p"), &regarding).await?;
    }
    publisher.publish(&ev("Assigned IP 192.0.2.2 from pool p"), &regarding).await?;
    let got = listed().await?;
    let counts: Vec<_> = got.iter().map(|(note, count, _)| (note.as_str(), *count)).collect();
    ensure!(
        counts
            == [("Assigned IP 192.0.2.1 from pool p", Some(3)), ("Assigned IP 192.0.2.2 from pool p", None)],
        "three of one note and one of another: {got:?}"
    );
    let first = &got[0].2;
    let e = events.get(first).await?;
    ensure!(e.reporting_controller.as_deref() == Some("purelb-test"), "{e:?}");
    ensure!(e.reporting_instance.as_deref() == Some("node-a"), "{e:?}");
    ensure!(e.regarding.and_then(|r| r.uid) == object.metadata.uid, "the Event is about the object");

    events.delete(first, &DeleteParams::default()).await?;
    publisher.publish(&ev("Assigned IP 192.0.2.1 from pool p"), &regarding).await?;
    let got = listed().await?;
    ensure!(
        got.len() == 2
            && got[0].0 == "Assigned IP 192.0.2.1 from pool p"
            && got[0].1.is_none()
            && got[0].2 != *first,
        "a repeat of a deleted Event is a new one: {got:?}"
    );
    Ok(())
}
