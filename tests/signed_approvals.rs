//! Approvals signed with SSH keys, against a real server: a runbook that
//! names `[approvals] allowed_signers` counts only approvals whose
//! signature `ssh-keygen -Y verify` accepts. A superuser who writes rows
//! into pgpilot.approvals (trigger disabled, any approver) cannot make
//! them count; a key the file does not list is refused; editing the
//! runbook or the file voids the signatures.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Ran;
use common::governance::{ApprovalLab, said};

const RUNBOOK: &str = r#"
[runbook]
id = "users-add-nickname-signed"
title = "Add users.nickname"
change_type = "minor"

[approvals]
required = ["technical", "business"]
allowed_signers = "allowed_signers"

[[phase]]
id = "change"

  [[phase.step]]
  id = "add-nickname"
  kind = "change"
  sql = "ALTER TABLE users ADD COLUMN nickname text"
  rollback = "ALTER TABLE users DROP COLUMN nickname"
"#;

/// The approvers' lab, the runbook's folder holding its allowed_signers,
/// and the approvers' private keys elsewhere.
struct Setup {
    approvals: ApprovalLab,
    keys: tempfile::TempDir,
}

impl std::ops::Deref for Setup {
    type Target = ApprovalLab;

    fn deref(&self) -> &ApprovalLab {
        &self.approvals
    }
}

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("{name}@example.com"))
        .arg("-f")
        .arg(&key)
        .output()
        .expect("ssh-keygen (install openssh-client)");
    assert!(out.status.success(), "{out:?}");
    key
}

fn public(key: &Path) -> String {
    let text = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut words = text.split_whitespace();
    format!("{} {}", words.next().unwrap(), words.next().unwrap())
}

/// Signs `message` as pgpilot does, with `ssh-keygen -Y sign`.
fn sign(key: &Path, message: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "pgpilot-approval", "-f"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

impl Setup {
    async fn new(tag: &str) -> Setup {
        let s = Setup {
            approvals: ApprovalLab::new("sign", tag, "CREATE TABLE users (id int)").await,
            keys: tempfile::tempdir().unwrap(),
        };
        let (a, b) = (s.key("alice"), s.key("bob"));
        keygen(s.keys.path(), "carol");
        s.write_signers(&format!(
            "# who may approve\nalice@example.com namespaces=\"pgpilot-approval\" {}\nbob@example.com {}\n",
            public(&a),
            public(&b)
        ));
        s.admit_approvers(RUNBOOK).await;
        s
    }

    /// The private key of `name`, made on first use.
    fn key(&self, name: &str) -> PathBuf {
        let key = self.keys.path().join(name);
        if key.exists() {
            key
        } else {
            keygen(self.keys.path(), name)
        }
    }

    fn write_signers(&self, text: &str) {
        std::fs::write(self.folder.path().join("allowed_signers"), text).unwrap();
    }

    fn approve_signed(&self, rb: &str, role: &str, kind: &str, who: &str) -> Ran {
        let key = self.key(who);
        self.approve(rb, role, kind, &["--sign-with", key.to_str().unwrap()])
    }

    fn hash(&self, rb: &str) -> String {
        let plan = self.lab.run(&["plan", rb, "--format", "json"]);
        assert_eq!(plan.code, 0, "{plan}");
        let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
        doc["approvals"]["sha256"].as_str().unwrap().to_string()
    }

    /// What a superuser can do: write any row, under any approver's name.
    async fn forge(&self, kind: &str, approver: &str, principal: &str, signed_at: &str, sig: &str) {
        self.client
            .execute(
                "INSERT INTO pgpilot.approvals
                        (runbook_id, runbook_sha256, kind, approver, os_user, client_host,
                         principal, signed_at, signature, approved_at)
                 VALUES ('users-add-nickname-signed', $1, $2, $3, 'x', 'x', $4, $5, $6,
                         now() - interval '30 days')",
                &[
                    &self.hash(&self.folder.path().join("users.toml").display().to_string()),
                    &kind,
                    &approver,
                    &principal,
                    &signed_at,
                    &sig,
                ],
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_signatures_by_listed_keys_count_forged_rows_do_not() {
    let s = Setup::new("forge").await;
    let rb = s.write(RUNBOOK);

    // An unsigned approval of a signed runbook is refused before it is written.
    let plain = s.approve(&rb, &s.alice, "technical", &[]);
    assert_eq!(plain.code, 2, "{plain}");
    assert!(said(&plain).contains("--sign-with"), "{plain}");

    // Carol's key is not in allowed_signers: refused, under her name or alice's.
    let carol = s.approve_signed(&rb, &s.alice, "technical", "carol");
    assert_eq!(carol.code, 3, "{carol}");
    assert!(said(&carol).contains("does not verify"), "{carol}");
    let key = s.key("carol");
    let posing = s.approve(
        &rb,
        &s.alice,
        "technical",
        &[
            "--sign-with",
            key.to_str().unwrap(),
            "--principal",
            "alice@example.com",
        ],
    );
    assert_eq!(posing.code, 3, "{posing}");

    // A superuser writes rows in the approvers' names, the trigger off: one
    // with a made-up signature, one unsigned, one signed by carol's real key
    // over the exact message, claiming to be alice.
    s.client
        .batch_execute("ALTER TABLE pgpilot.approvals DISABLE TRIGGER approvals_stamp")
        .await
        .unwrap();
    let at = "2026-01-01T00:00:00Z";
    s.forge(
        "technical",
        &s.alice,
        "alice@example.com",
        at,
        "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
    )
    .await;
    s.client
        .batch_execute(&format!(
            "INSERT INTO pgpilot.approvals (runbook_id, runbook_sha256, kind, approver, os_user, client_host, approved_at)
             VALUES ('users-add-nickname-signed', '{}', 'business', '{}', 'x', 'x', now() - interval '30 days')",
            s.hash(&rb),
            s.bob
        ))
        .await
        .unwrap();
    let message = format!(
        "pgpilot-approval-v1\nrunbook: users-add-nickname-signed\nsha256: {}\nkind: business\nprincipal: bob@example.com\ntime: {at}\n",
        s.hash(&rb)
    );
    let carols = sign(&s.key("carol"), &message);
    s.forge("business", &s.bob, "bob@example.com", at, &carols)
        .await;
    s.client
        .batch_execute("ALTER TABLE pgpilot.approvals ENABLE TRIGGER approvals_stamp")
        .await
        .unwrap();

    let refused = s.run(&rb, &[]);
    assert_eq!(refused.code, 3, "{refused}");
    let out = said(&refused);
    assert!(
        out.contains("needs a technical approval") && out.contains("business approval"),
        "{out}"
    );
    assert!(out.contains("does not verify"), "{out}");
    assert!(out.contains("unsigned"), "{out}");
    assert!(out.contains("--sign-with KEY"), "{out}");
    assert!(!s.applied().await);

    let listed = s.lab.run(&["approvals", &rb, "--db", &s.operator()]);
    assert_eq!(listed.code, 0, "{listed}");
    assert!(listed.stdout.contains("does not verify"), "{listed}");
    assert!(listed.stdout.contains("unsigned, not counted"), "{listed}");
    assert!(!listed.stdout.contains("  valid"), "{listed}");

    // Real signatures by the listed keys count.
    let a = s.approve_signed(&rb, &s.alice, "technical", "alice");
    assert_eq!(a.code, 0, "{a}");
    assert!(
        a.stdout.contains("signed by alice@example.com, verified"),
        "{a}"
    );
    let b = s.approve_signed(&rb, &s.bob, "business", "bob");
    assert_eq!(b.code, 0, "{b}");
    let listed = s
        .lab
        .run(&["approvals", &rb, "--db", &s.operator(), "--format", "json"]);
    assert_eq!(listed.code, 0, "{listed}");
    let doc: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let verified = doc["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["signature_check"]["state"] == "verified")
        .count();
    assert_eq!(verified, 2, "{}", listed.stdout);

    // The operator who is alice in allowed_signers cannot count her own.
    let own = s.run(&rb, &["--principal", "alice@example.com"]);
    assert_eq!(own.code, 3, "{own}");
    assert!(said(&own).contains("operator's own principal"), "{own}");
    assert!(!s.applied().await);

    let ran = s.run(&rb, &[]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(s.applied().await);
    s.drop_roles().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_the_runbook_or_its_allowed_signers_voids_signed_approvals() {
    let s = Setup::new("edit").await;
    let rb = s.write(RUNBOOK);
    assert_eq!(
        s.approve_signed(&rb, &s.alice, "technical", "alice").code,
        0
    );
    assert_eq!(s.approve_signed(&rb, &s.bob, "business", "bob").code, 0);
    let signers = std::fs::read_to_string(s.folder.path().join("allowed_signers")).unwrap();

    // Who may approve changed: a new approver listed.
    let carol = public(&s.key("carol"));
    s.write_signers(&format!("{signers}carol@example.com {carol}\n"));
    let voided = s.run(&rb, &[]);
    assert_eq!(voided.code, 3, "{voided}");
    assert!(said(&voided).contains("another version"), "{voided}");

    // The file as reviewed, but the SQL edited.
    s.write_signers(&signers);
    let edited = s.write(&RUNBOOK.replace("nickname text", "nickname varchar(20)"));
    let voided = s.run(&edited, &[]);
    assert_eq!(voided.code, 3, "{voided}");
    assert!(said(&voided).contains("another version"), "{voided}");
    assert!(!s.applied().await);

    // Back to what was signed: the signatures count again.
    let rb = s.write(RUNBOOK);
    let ran = s.run(&rb, &[]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(s.applied().await);
    s.drop_roles().await;
}

#[test]
fn an_allowed_signers_file_outside_the_runbooks_folder_is_refused_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("rb");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(
        dir.path().join("signers"),
        "alice@example.com ssh-ed25519 AAAA\n",
    )
    .unwrap();
    let rb = inner.join("users.toml");
    std::fs::write(
        &rb,
        RUNBOOK.replace("\"allowed_signers\"", "\"../signers\""),
    )
    .unwrap();
    let lab_free = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(["check", rb.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&lab_free.stderr).into_owned()
        + &String::from_utf8_lossy(&lab_free.stdout);
    assert_eq!(lab_free.status.code(), Some(1), "{err}");
    assert!(err.contains("users.toml:9:19"), "{err}");
    assert!(err.contains("outside the runbook's folder"), "{err}");
}
