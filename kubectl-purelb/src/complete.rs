//! Shell completion: `completion <shell>` prints clap_complete's script for `kubectl-purelb`; and
//! [`candidates`] answers kubectl's plugin completion (kubectl >= 1.26 runs `kubectl_complete-purelb
//! <words…> <word being completed>` and reads one candidate per line, then `:<directive>` as cobra does).
//! Candidates come from the same clap definition as the parser: subcommands, flags and their values;
//! Service names (`explain`) and ServiceGroup names (`sg delete`) come from the cluster, read with the
//! same `--kubeconfig`/`--context`/`-n` the words carry (no candidates when it cannot be reached).

use clap::CommandFactory;
use kube::ResourceExt;

use crate::cli::{Cli, Global};

/// Cobra's directive: complete nothing but the candidates.
const NO_FILE: u32 = 4;
/// Cobra's directive: let the shell complete file names.
const DEFAULT: u32 = 0;

/// The completion script for `shell`.
pub fn script(shell: clap_complete::Shell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kubectl-purelb", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Names that only the cluster knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dynamic {
    /// Services of the namespace (`explain`).
    Services,
    /// ServiceGroups (`sg delete`).
    Groups,
}

/// The candidates for the last of `words` (the words after `kubectl purelb`), and cobra's directive.
pub fn candidates(words: &[String]) -> (Vec<String>, u32) {
    let (c, d, _) = candidates_and_dynamic(words);
    (c, d)
}

/// Like [`candidates`], and which names from the cluster would complete the word too.
pub fn candidates_and_dynamic(words: &[String]) -> (Vec<String>, u32, Option<Dynamic>) {
    let root = Cli::command();
    let mut cmd = &root;
    let (last, before) = match words.split_last() {
        Some((l, b)) => (l.as_str(), b),
        None => ("", &[][..]),
    };
    let mut globals: Vec<clap::Arg> = root.get_arguments().filter(|a| a.is_global_set()).cloned().collect();
    let mut pending: Option<clap::Arg> = None;
    let mut path: Vec<String> = Vec::new();
    let mut positionals = 0usize;
    for w in before {
        if pending.take().is_some() {
            continue;
        }
        if let Some(flag) = w.strip_prefix('-') {
            if w.contains('=') {
                continue;
            }
            if let Some(arg) = find_flag(cmd, &globals, flag)
                && arg.get_action().takes_values()
            {
                pending = Some(arg);
            }
            continue;
        }
        if let Some(sub) = cmd.find_subcommand(w) {
            cmd = sub;
            path.push(sub.get_name().to_string());
            positionals = 0;
            globals.extend(cmd.get_arguments().filter(|a| a.is_global_set()).cloned());
        } else {
            positionals += 1;
        }
    }
    if let Some(arg) = pending {
        let values: Vec<String> =
            arg.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
        if values.is_empty() {
            return (Vec::new(), DEFAULT, None);
        }
        return (values.into_iter().filter(|v| v.starts_with(last)).collect(), NO_FILE, None);
    }
    let mut out = Vec::new();
    if last.starts_with('-') {
        for a in cmd.get_arguments().chain(globals.iter()).filter(|a| !a.is_hide_set()) {
            if let Some(long) = a.get_long() {
                out.push(format!("--{long}"));
            }
        }
    } else {
        for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            out.push(s.get_name().to_string());
        }
        for a in cmd.get_positionals() {
            out.extend(a.get_possible_values().iter().map(|v| v.get_name().to_string()));
        }
    }
    out.sort();
    out.dedup();
    let dynamic = match (path.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), positionals) {
        _ if last.starts_with('-') => None,
        (["explain"], 0) => Some(Dynamic::Services),
        (["sg", "delete"], 0) => Some(Dynamic::Groups),
        _ => None,
    };
    (out.into_iter().filter(|c| c.starts_with(last)).collect(), NO_FILE, dynamic)
}

/// The connection flags among `words`.
fn connection(words: &[String]) -> Global {
    let mut g = Global {
        kubeconfig: None,
        context: None,
        namespace: None,
        all_namespaces: false,
        output: crate::style::Format::Table,
        purelb_namespace: crate::snapshot::DEFAULT_INSTALL_NAMESPACE.into(),
        ignore_classless: false,
    };
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (w.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        match flag {
            "--kubeconfig" => g.kubeconfig = value().map(Into::into),
            "--context" => g.context = value(),
            "-n" | "--namespace" => g.namespace = value(),
            _ => {}
        }
    }
    g
}

/// Names from the cluster for `dynamic`, starting with `prefix`; none when it cannot be reached.
async fn names(words: &[String], dynamic: Dynamic, prefix: &str) -> Vec<String> {
    let Ok(cluster) = crate::cluster::connect(&connection(words)).await else { return Vec::new() };
    let names: Vec<String> = match dynamic {
        Dynamic::Services => {
            let api: kube::Api<k8s_openapi::api::core::v1::Service> =
                kube::Api::namespaced(cluster.client.clone(), &cluster.namespace);
            match api.list(&Default::default()).await {
                Ok(l) => l
                    .items
                    .iter()
                    .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
                    .map(|s| s.name_any())
                    .collect(),
                Err(_) => Vec::new(),
            }
        }
        Dynamic::Groups => {
            cluster.groups().await.map(|g| g.iter().map(|g| g.name_any()).collect()).unwrap_or_default()
        }
    };
    names.into_iter().filter(|n| n.starts_with(prefix)).collect()
}

fn find_flag(cmd: &clap::Command, globals: &[clap::Arg], flag: &str) -> Option<clap::Arg> {
    let matches = |a: &clap::Arg| match flag.strip_prefix('-') {
        Some(long) => a.get_long() == Some(long),
        None => flag.len() == 1 && a.get_short().map(String::from).as_deref() == Some(flag),
    };
    cmd.get_arguments().find(|a| matches(a)).cloned().or_else(|| globals.iter().find(|a| matches(a)).cloned())
}

/// The candidates as kubectl reads them, names from the cluster included.
pub async fn cobra_output_with_cluster(words: &[String]) -> String {
    let (mut cands, directive, dynamic) = candidates_and_dynamic(words);
    if let Some(d) = dynamic {
        let last = words.last().map(String::as_str).unwrap_or_default();
        // Completion must not hang on an unreachable cluster.
        let found = tokio::time::timeout(std::time::Duration::from_secs(3), names(words, d, last)).await;
        cands.extend(found.unwrap_or_default());
    }
    format_cobra(cands, directive)
}

/// The static candidates as kubectl reads them.
pub fn cobra_output(words: &[String]) -> String {
    let (cands, directive) = candidates(words);
    format_cobra(cands, directive)
}

fn format_cobra(cands: Vec<String>, directive: u32) -> String {
    let mut out = String::new();
    for c in cands {
        out.push_str(&c);
        out.push('\n');
    }
    out.push_str(&format!(":{directive}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(words: &[&str]) -> (Vec<String>, u32) {
        candidates(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn completes_subcommands_flags_and_values() {
        let (top, d) = c(&[""]);
        assert!(top.contains(&"explain".to_string()) && top.contains(&"sg".to_string()), "{top:?}");
        assert!(!top.iter().any(|t| t.starts_with("__")), "hidden commands stay hidden");
        assert_eq!(d, NO_FILE);
        assert_eq!(c(&["sg", "c"]).0, ["create"]);
        assert_eq!(c(&["pools", "-o", "j"]).0, ["json"]);
        let (flags, _) = c(&["sg", "create", "--v4"]);
        assert_eq!(flags, ["--v4-aggregation", "--v4-pool", "--v4-subnet"]);
        assert!(c(&["explain", "--"]).0.contains(&"--kubeconfig".to_string()), "global flags too");
        assert_eq!(c(&["explain", "-f", ""]).1, DEFAULT, "file names after -f");
        assert_eq!(c(&["completion", "z"]).0, ["zsh"]);
        assert_eq!(cobra_output(&["sg".into(), "l".into()]), "list\n:4\n");
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(candidates_and_dynamic(&words(&["explain", "-n", "x", "we"])).2, Some(Dynamic::Services));
        assert_eq!(candidates_and_dynamic(&words(&["sg", "delete", ""])).2, Some(Dynamic::Groups));
        assert_eq!(candidates_and_dynamic(&words(&["sg", "delete", "a", ""])).2, None);
        let g = connection(&words(&["explain", "--context=c", "-n", "ns", "--kubeconfig", "/k"]));
        assert_eq!((g.context.as_deref(), g.namespace.as_deref()), (Some("c"), Some("ns")));
        assert_eq!(g.kubeconfig, Some("/k".into()));
    }

    #[test]
    fn scripts_name_the_binary() {
        assert!(script(clap_complete::Shell::Bash).contains("kubectl-purelb"));
    }
}
