//! TLS on both listeners (`--tls-cert`, `--tls-key`): curl, psql and the
//! CLI reach the server with the test CA, and a client that does not
//! trust it is refused. Certificates are made by the openssl CLI.

mod support;

use std::path::Path;
use std::process::Command;
use support::Served;

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=kappa test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn https_and_postgresql_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    certificates(tmp.path());
    let ca = tmp.path().join("ca.pem");
    let (cert, key) = (tmp.path().join("server.pem"), tmp.path().join("server.key"));
    let dir = tmp.path().join("data");
    let s = Served::start(
        &dir,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);

    // curl trusting the CA: the API works; not trusting it: refused.
    let ca_arg = ca.to_str().unwrap();
    let (ok, body) = curl(&[
        "--cacert",
        ca_arg,
        &format!("{}/v1/sql", s.url),
        "-d",
        "CREATE TOPIC t (a BIGINT)",
    ]);
    assert!(ok && body.contains("created topic t"), "{body}");
    let (ok, body) = curl(&[&format!("{}/healthz", s.url)]);
    assert!(
        !ok,
        "a client that does not trust the CA is refused: {body}"
    );
    let plain = s.url.replace("https://", "http://");
    let (ok, body) = curl(&[&format!("{plain}/healthz")]);
    assert!(
        !ok || !body.contains("\"ok\""),
        "plain HTTP gets no answer: {body}"
    );

    // psql with certificate verification.
    let (host, port) = s.pg.rsplit_once(':').unwrap();
    let conn = format!(
        "host={host} port={port} user=kappa dbname=kappa sslmode=verify-full sslrootcert={ca_arg}"
    );
    let out = Command::new("psql")
        .args([
            conn.as_str(),
            "-X",
            "-At",
            "-c",
            "INSERT INTO t VALUES (41), (1)",
            "-c",
            "SELECT sum(a) FROM t",
            "-c",
            "\\conninfo",
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\n42\n"), "{stdout}");
    assert!(
        stdout.contains("SSL connection (protocol: TLSv1.3"),
        "{stdout}"
    );

    // The CLI: through the server with KAPPA_CA_CERT; without it, a clear
    // TLS error.
    let kappa = |ca: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kappa"));
        c.args(["--server", &s.url, "sql", "SELECT count(*) AS n FROM t"]);
        c.env_remove("KAPPA_CA_CERT");
        if let Some(ca) = ca {
            c.env("KAPPA_CA_CERT", ca);
        }
        c.output().unwrap()
    };
    let out = kappa(Some(&ca));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 2\n"));
    let out = kappa(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Kappa server answers") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[test]
fn a_missing_or_bad_certificate_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("junk.pem"), "not a certificate\n").unwrap();
    let (cert, key) = (tmp.path().join("junk.pem"), tmp.path().join("missing.key"));
    let err = support::serve_refused(
        &tmp.path().join("data"),
        &[
            "--tls-cert".as_ref(),
            cert.as_ref(),
            "--tls-key".as_ref(),
            key.as_ref(),
        ],
    );
    assert!(
        err.contains("junk.pem") && err.contains("no certificate"),
        "{err}"
    );
}
