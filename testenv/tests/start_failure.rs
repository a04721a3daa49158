//! A server that fails to start is reported with the end of its log.

use std::os::unix::fs::PermissionsExt;

use testenv::{Binaries, ControlPlane};

#[tokio::test]
async fn a_crashing_apiserver_is_reported_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("kube-apiserver");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'E1126 fake: unknown flag --nonsense' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let binaries = Binaries {
        kube_apiserver: fake,
        ..Binaries::locate().await.unwrap()
    };

    let error = ControlPlane::start_with(binaries).await.err().unwrap();
    let message = format!("{error:#}");
    assert!(message.contains("kube-apiserver exited"), "{message}");
    assert!(message.contains("unknown flag --nonsense"), "{message}");
}
