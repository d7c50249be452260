//! Managed mode: the platform's own operator and account, and user JWTs minted with the
//! account key (decentralised NATS auth, `docs/SECURITY.md`). The JWTs are the NATS v2 claims
//! format signed with nkeys (`alg: ed25519-nkey`); the server runs in operator mode with the
//! account preloaded into a memory resolver.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_core::{Error, Result};
use data_encoding::BASE64URL_NOPAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

use super::roles::{Layout, Permissions, Role};

/// Encodes `claims` (whose `jti` and `iat` are filled in) as a JWT signed by `signer`.
fn encode(mut claims: Value, signer: &KeyPair, now: SystemTime) -> Result<String> {
    let iat = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    claims["iat"] = json!(iat);
    claims["jti"] = json!(uuid_like(signer, &claims)?);
    let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{body}");
    let signature = signer
        .sign(signing_input.as_bytes())
        .map_err(|e| Error::InvalidArgument(format!("cannot sign a JWT: {e}")))?;
    Ok(format!(
        "{signing_input}.{}",
        BASE64URL_NOPAD.encode(&signature)
    ))
}

/// A unique claim id: the signature of the claims so far, shortened (only uniqueness matters).
fn uuid_like(signer: &KeyPair, claims: &Value) -> Result<String> {
    let sig = signer
        .sign(claims.to_string().as_bytes())
        .map_err(|e| Error::InvalidArgument(format!("cannot sign a JWT id: {e}")))?;
    Ok(data_encoding::BASE32_NOPAD.encode(&sig[..20]))
}

/// The operator JWT (self-signed).
pub fn operator_jwt(operator: &KeyPair, name: &str, now: SystemTime) -> Result<String> {
    let claims = json!({"iss": operator.public_key(), "sub": operator.public_key(), "name": name,
        "nats": {"type": "operator", "version": 2}});
    encode(claims, operator, now)
}

/// An account JWT signed by the operator; `jetstream` enables unlimited JetStream.
pub fn account_jwt(
    operator: &KeyPair,
    account: &KeyPair,
    name: &str,
    jetstream: bool,
    now: SystemTime,
) -> Result<String> {
    let js = if jetstream { -1 } else { 0 };
    let claims = json!({"iss": operator.public_key(), "sub": account.public_key(), "name": name,
        "nats": {"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1, "mem_storage": js, "disk_storage": js,
            "streams": -1, "consumer": -1},
            "type": "account", "version": 2}});
    encode(claims, operator, now)
}

/// A user JWT for `role` of `layout` signed by the platform's account key, valid for `ttl`
/// from `now`, with the role's permissions.
pub fn user_jwt(
    account: &KeyPair,
    user: &KeyPair,
    layout: &Layout,
    role: &Role,
    ttl: Duration,
    now: SystemTime,
) -> Result<String> {
    let p: Permissions = layout.permissions(role);
    let exp = (now + ttl)
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let mut nats = json!({
        "pub": {"allow": p.publish_allow, "deny": p.publish_deny},
        "sub": {"allow": p.subscribe_allow, "deny": p.subscribe_deny},
        "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2});
    if p.allow_responses {
        nats["resp"] = json!({"max": 1, "ttl": 0});
    }
    let claims = json!({"iss": account.public_key(), "sub": user.public_key(),
        "name": role.to_string(), "exp": exp, "nats": nats});
    encode(claims, account, now)
}

/// A `.creds` file (user JWT and seed) as async-nats and the `nats` CLI read it.
pub fn creds_file(jwt: &str, user: &KeyPair) -> Result<String> {
    let seed = user
        .seed()
        .map_err(|e| Error::InvalidArgument(format!("cannot encode a user seed: {e}")))?;
    Ok(format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    ))
}

/// The expiry (`exp`) of the user JWT in a `.creds` file's text, if it has one.
pub fn creds_expiry(creds: &str) -> Option<SystemTime> {
    let jwt = creds
        .lines()
        .skip_while(|l| !l.contains("BEGIN NATS USER JWT"))
        .nth(1)?
        .trim();
    let body = BASE64URL_NOPAD
        .decode(jwt.split('.').nth(1)?.as_bytes())
        .ok()?;
    let claims: Value = serde_json::from_slice(&body).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims["exp"].as_u64()?))
}

/// `InvalidArgument` naming `path` when the JWT in this `.creds` text expired before `now`
/// (the server only says "authorization violation").
pub fn check_not_expired(path: &std::path::Path, creds: &str, now: SystemTime) -> Result<()> {
    match creds_expiry(creds) {
        Some(exp) if exp <= now => {
            let ago = now.duration_since(exp).unwrap_or(Duration::ZERO).as_secs();
            Err(Error::InvalidArgument(format!(
                "the user JWT in {} expired {ago} s ago: mint new credentials (`cluster auth \
                 mint`) or refresh the file",
                path.display()
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims_of(jwt: &str) -> Value {
        let body = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&BASE64URL_NOPAD.decode(body.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn a_user_jwt_carries_the_role_and_expiry_and_verifies() {
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        let layout = Layout::new("p".parse().unwrap(), Vec::new(), vec!["a".parse().unwrap()]);
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let role = Role::App("a".parse().unwrap());
        let jwt = user_jwt(
            &account,
            &user,
            &layout,
            &role,
            Duration::from_secs(60),
            now,
        )
        .unwrap();
        let c = claims_of(&jwt);
        assert_eq!(c["iss"], account.public_key());
        assert_eq!(c["sub"], user.public_key());
        assert_eq!(
            (c["iat"].as_u64(), c["exp"].as_u64()),
            (Some(1_000), Some(1_060))
        );
        assert_eq!(c["nats"]["type"], "user");
        assert!(
            c["nats"]["pub"]["allow"]
                .as_array()
                .unwrap()
                .contains(&json!("$KV.p_app_a.>"))
        );
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
        account.verify(input.as_bytes(), &sig).unwrap();
        let creds = creds_file(&jwt, &user).unwrap();
        assert!(creds.contains(&jwt) && creds.contains("BEGIN USER NKEY SEED"));
        assert_eq!(
            creds_expiry(&creds),
            Some(UNIX_EPOCH + Duration::from_secs(1_060))
        );
        let path = std::path::Path::new("a.creds");
        assert!(check_not_expired(path, &creds, UNIX_EPOCH + Duration::from_secs(1_059)).is_ok());
        let e = check_not_expired(path, &creds, UNIX_EPOCH + Duration::from_secs(1_070));
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("a.creds") && e.contains("expired 10 s ago"),
            "{e}"
        );
    }
}
