//! Test certificates made with the `openssl` CLI: a CA, a server certificate for 127.0.0.1
//! and client certificates with a chosen common name (`CN=<name>`, the subject nats-server's
//! `verify_and_map` maps to a user).

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl is needed for the TLS tests (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes into `dir`: `ca.pem`/`ca.key` (CN=test-ca), `server.pem`/`server.key` (for
/// 127.0.0.1 and localhost) and `{name}.pem`/`{name}.key` (CN=`name`) for each client, all
/// signed by the CA and valid for a day.
///
/// # Panics
///
/// When `openssl` is missing or fails.
pub fn make_certs(dir: &Path, clients: &[&str]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
        ],
    );
    // Extensions make the certificates X.509 v3, which webpki requires.
    let write = |file: &str, text: &str| {
        std::fs::write(dir.join(file), text).unwrap_or_else(|e| panic!("cannot write {file}: {e}"));
    };
    write(
        "server.ext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    write("client.ext", "extendedKeyUsage=clientAuth\n");
    let sign = |name: &str, ext: &str| {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let subject = format!("/CN={name}");
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subject,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &pem,
                "-extfile",
                ext,
            ],
        );
    };
    sign("server", "server.ext");
    for client in clients {
        sign(client, "client.ext");
    }
}
