//! The deployment files: `deploy/k8s/` validates against the Kubernetes
//! schemas (offline, `kubernetes-validate --strict`), and the host accepts
//! the arguments the Deployment and the Containerfile give it.

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::Command;

use crate::util::{read_response, repo_root, Server, TempDir, DEADLINE};

/// `kubernetes-validate --strict` on `files`: its exit status and output.
fn validate(files: &[PathBuf]) -> (bool, String) {
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(files)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains("No module named"),
        "kubernetes-validate is missing: run scripts/install-toolchains\n{text}"
    );
    (output.status.success(), text)
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("deploy/k8s"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let files = manifests();
    let kinds: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("kind: ").map(str::to_owned))
        })
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} in deploy/k8s: {kinds:?}"
        );
    }
    let (ok, text) = validate(&files);
    assert!(ok, "{text}");
    // The check can fail: a misspelt field is caught.
    let dir = TempDir::new();
    let deployment = std::fs::read_to_string(repo_root().join("deploy/k8s/deployment.yaml"))
        .unwrap()
        .replace("  replicas: 2", "  replica: 2");
    let bad = dir.write("deployment.yaml", deployment);
    let (ok, text) = validate(&[bad]);
    assert!(!ok && text.contains("replica"), "{text}");
}

/// `args` with the container's addresses and paths made local: ports on
/// 127.0.0.1:0, `/srv/guests/` the repository's guests.
fn localized(args: &[String]) -> Vec<std::ffi::OsString> {
    let guests = format!("{}/", repo_root().join("guests").display());
    args.iter()
        .map(|arg| {
            arg.replace("0.0.0.0:8080", "127.0.0.1:0")
                .replace("0.0.0.0:9000", "127.0.0.1:0")
                .replace("/srv/guests/", &guests)
                .into()
        })
        .collect()
}

/// Starts the host as `args` (after `serve`) say and checks what the
/// Deployment's probes and a client would see: the admin paths the probes
/// use answer 200, the app answers HTTP; then it drains on SIGTERM.
#[track_caller]
fn assert_serves(source: &str, args: &[String], probe_paths: &[&str]) {
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "{source}: {args:?}"
    );
    let server = Server::start(&[], &localized(&args[1..]));
    let admin = server.admin_addr();
    for path in probe_paths {
        let mut stream = std::net::TcpStream::connect(admin).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let response = read_response(&mut BufReader::new(stream));
        assert_eq!(response.status, 200, "{source}: probe {path}");
    }
    let mut stream = std::net::TcpStream::connect(server.addr("hello-http")).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(response.status, 200, "{source}: the app");
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(DEADLINE).success(), "{source}: drain");
}

#[test]
fn the_deployment_and_the_containerfile_start_a_host_their_probes_find_ready() {
    let deployment =
        std::fs::read_to_string(repo_root().join("deploy/k8s/deployment.yaml")).unwrap();
    // The container's `args:` list: the `- ` lines after it.
    let args: Vec<String> = deployment
        .lines()
        .skip_while(|line| line.trim() != "args:")
        .skip(1)
        .map_while(|line| line.trim().strip_prefix("- ").map(str::to_owned))
        .collect();
    let probe_paths: Vec<&str> = deployment
        .lines()
        .filter_map(|line| line.trim().strip_prefix("path: "))
        .collect();
    assert!(
        probe_paths.contains(&"/readyz") && probe_paths.contains(&"/healthz"),
        "{probe_paths:?}"
    );
    assert_serves("deploy/k8s/deployment.yaml", &args, &probe_paths);

    let containerfile = std::fs::read_to_string(repo_root().join("Containerfile")).unwrap();
    let cmd = containerfile
        .lines()
        .find_map(|line| line.strip_prefix("CMD "))
        .expect("the Containerfile has a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD is a JSON array");
    assert_serves("Containerfile", &cmd, &["/healthz", "/readyz"]);
}
