//! The node's libp2p identity, persisted so that its `/p2p/<peer id>` address survives restarts
//! (`market node` keeps it at `$MARKET_HOME/keys/node.key`).

use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read node key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node key {path} is malformed: {reason}; move it away to generate a new identity")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot write node key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads the ed25519 keypair at `path` (protobuf encoding, as libp2p writes it), or generates one
/// and writes it atomically, readable by the owner only.
pub fn load_or_generate(path: &Path) -> Result<Keypair, IdentityError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Malformed {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Malformed {
                    path: path.to_owned(),
                    reason: format!("cannot encode a fresh key: {e}"),
                })?;
            let write = |source| IdentityError::Write {
                path: path.to_owned(),
                source,
            };
            market_core::fsutil::write_atomic(path, &bytes).map_err(write)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(write)?;
            }
            Ok(key)
        }
        Err(source) => Err(IdentityError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_a_restart_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("node.key");
        let first = load_or_generate(&path).unwrap();
        let again = load_or_generate(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(
            load_or_generate(&path),
            Err(IdentityError::Malformed { .. })
        ));
    }
}
