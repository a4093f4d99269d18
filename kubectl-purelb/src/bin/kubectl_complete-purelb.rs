//! `kubectl_complete-purelb`: kubectl's plugin completion (kubectl >= 1.26) runs it with the words after
//! `kubectl purelb`, the last being the word to complete; it prints one candidate per line and then
//! cobra's `:<directive>`. Service and ServiceGroup names come from the cluster when it can be reached.

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let output = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(kubectl_purelb::complete::cobra_output_with_cluster(&words)),
        Err(_) => kubectl_purelb::complete::cobra_output(&words),
    };
    kubectl_purelb::style::print(&output);
}
