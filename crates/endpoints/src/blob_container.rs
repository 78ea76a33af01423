//! The blob container of an import or export job: an Azure Storage container named by its
//! SAS URI (`https://{account}.blob.core.windows.net/{container}?sv=…&sig=…`, or Azurite's
//! `http://{host}:{port}/{account}/{container}?…`), read with Get Blob and written with Put
//! Blob, or Put Block and Put Block List past one block; or, ironhub's extension for
//! air-gapped hubs, a directory of the server's file system (`file:///path`), each blob a
//! file written under a temporary name and renamed when complete. Errors never repeat the
//! URI's query (it holds the SAS signature).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use ironhub_client::{ClientError, StorageResponse, WebClient};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use tokio::io::AsyncWriteExt as _;

/// The size of one block of a large blob (the rest of a blob smaller than this goes up in
/// one Put Blob).
pub const BLOCK_SIZE: usize = 4 * 1024 * 1024;
/// How long one storage call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest blob name Azure Storage takes.
const MAX_BLOB_NAME: usize = 1024;

/// What a blob name's path segments escape in a URL.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Why a container cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    /// The URI or blob name is not one a container or blob can have (the request is wrong).
    #[error("{0}")]
    Invalid(String),
    /// The storage refused or failed a call, or could not be reached.
    #[error("{0}")]
    Storage(String),
}

/// A blob container (see the module documentation).
#[derive(Debug, Clone)]
pub enum BlobContainer {
    /// An Azure Storage container: its URL without the query, and the SAS query.
    Azure {
        base: String,
        sas: String,
        client: WebClient,
    },
    /// A directory.
    Local(PathBuf),
}

/// Checks a blob name: 1 to 1024 characters, `/`-separated segments none of which is
/// empty, `.` or `..`, and no `\`.
pub fn check_blob_name(name: &str) -> Result<(), ContainerError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_BLOB_NAME
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && name
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."));
    if ok {
        Ok(())
    } else {
        Err(ContainerError::Invalid(format!(
            "The blob name '{name}' is not valid: it must be 1 to {MAX_BLOB_NAME} characters, \
             '/'-separated names none of which is empty, '.' or '..'."
        )))
    }
}

/// The scheme and the rest of a container URI, the scheme lower-cased.
fn split_uri(uri: &str) -> Result<(String, &str), ContainerError> {
    let invalid = || {
        ContainerError::Invalid(
            "The blob container URI is not valid: it must be an https:// (or http://) URL of \
             a blob container with a SAS token, or a file:/// URL of a directory."
                .into(),
        )
    };
    let (scheme, rest) = uri.trim().split_once("://").ok_or_else(invalid)?;
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "https" | "http" => {
            let path = rest.split('?').next().unwrap_or_default();
            let (host, container) = path.split_once('/').ok_or_else(invalid)?;
            if host.is_empty() || container.trim_matches('/').is_empty() {
                return Err(invalid());
            }
            Ok((scheme, rest))
        }
        "file" if rest.starts_with('/') && rest.len() > 1 && !rest.contains('?') => {
            Ok((scheme, rest))
        }
        _ => Err(invalid()),
    }
}

/// Checks a container URI without calling anything.
pub fn check_container_uri(uri: &str) -> Result<(), ContainerError> {
    split_uri(uri).map(|_| ())
}

impl BlobContainer {
    /// The container `uri` names (see [`check_container_uri`]).
    pub fn open(uri: &str) -> Result<BlobContainer, ContainerError> {
        let (scheme, rest) = split_uri(uri)?;
        if scheme == "file" {
            let path = percent_decode_str(rest).decode_utf8_lossy().into_owned();
            return Ok(BlobContainer::Local(PathBuf::from(path)));
        }
        let (path, sas) = rest.split_once('?').unwrap_or((rest, ""));
        let client = WebClient::new(&[]).map_err(|e| ContainerError::Storage(e.to_string()))?;
        Ok(BlobContainer::Azure {
            base: format!("{scheme}://{}", path.trim_end_matches('/')),
            sas: sas.to_owned(),
            client,
        })
    }

    /// The URL of blob `name`, with the SAS.
    fn blob_url(base: &str, sas: &str, name: &str) -> String {
        let name: Vec<String> = name
            .split('/')
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        let url = format!("{base}/{}", name.join("/"));
        if sas.is_empty() {
            url
        } else {
            format!("{url}?{sas}")
        }
    }

    /// The file of blob `name` in a local container.
    fn blob_path(dir: &Path, name: &str) -> PathBuf {
        name.split('/').fold(dir.to_path_buf(), |p, s| p.join(s))
    }

    /// Blob `name`'s content; an error past `max_bytes`.
    pub async fn read(&self, name: &str, max_bytes: usize) -> Result<Vec<u8>, ContainerError> {
        check_blob_name(name)?;
        let content = match self {
            BlobContainer::Azure { base, sas, client } => {
                let answer = client
                    .get_blob(&Self::blob_url(base, sas, name), CALL_TIMEOUT)
                    .await
                    .map_err(|e| unreachable(&e))?;
                if answer.status != 200 {
                    return Err(refused("read the blob", name, &answer));
                }
                answer.body.to_vec()
            }
            BlobContainer::Local(dir) => {
                let path = Self::blob_path(dir, name);
                tokio::fs::read(&path).await.map_err(|e| {
                    ContainerError::Storage(format!(
                        "Cannot read the blob '{name}' ({}): {e}.",
                        path.display()
                    ))
                })?
            }
        };
        if content.len() > max_bytes {
            return Err(ContainerError::Storage(format!(
                "The blob '{name}' is larger than {max_bytes} bytes."
            )));
        }
        Ok(content)
    }

    /// A writer of blob `name`: nothing is visible under that name until
    /// [`BlobWriter::finish`].
    pub async fn writer(&self, name: &str) -> Result<BlobWriter, ContainerError> {
        check_blob_name(name)?;
        let target = match self {
            BlobContainer::Azure { base, sas, client } => Target::Azure {
                url: Self::blob_url(base, sas, name),
                client: client.clone(),
                blocks: Vec::new(),
            },
            BlobContainer::Local(dir) => {
                let path = Self::blob_path(dir, name);
                if !dir.is_dir() {
                    return Err(ContainerError::Storage(format!(
                        "The container directory {} does not exist.",
                        dir.display()
                    )));
                }
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| local_error("create the directory of", name, &e))?;
                }
                let mut part = path.clone().into_os_string();
                part.push(".ironhub-part");
                let part = PathBuf::from(part);
                let file = tokio::fs::File::create(&part)
                    .await
                    .map_err(|e| local_error("create", name, &e))?;
                Target::Local { path, part, file }
            }
        };
        Ok(BlobWriter {
            name: name.to_owned(),
            buffer: Vec::new(),
            target,
        })
    }

    /// Writes blob `name` whole.
    pub async fn write(&self, name: &str, content: &[u8]) -> Result<(), ContainerError> {
        let mut writer = self.writer(name).await?;
        writer.write(content).await?;
        writer.finish().await
    }
}

enum Target {
    Azure {
        url: String,
        client: WebClient,
        blocks: Vec<String>,
    },
    Local {
        path: PathBuf,
        part: PathBuf,
        file: tokio::fs::File,
    },
}

/// A blob being written, a block at a time (see [`BlobContainer::writer`]).
pub struct BlobWriter {
    name: String,
    buffer: Vec<u8>,
    target: Target,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// Appends `bytes`; a full block goes to the storage at once.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ContainerError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= BLOCK_SIZE {
            self.flush_block().await?;
        }
        Ok(())
    }

    async fn flush_block(&mut self) -> Result<(), ContainerError> {
        let content = std::mem::take(&mut self.buffer);
        let name = self.name.clone();
        match &mut self.target {
            Target::Azure {
                url,
                client,
                blocks,
            } => {
                let id = base64::engine::general_purpose::STANDARD
                    .encode(format!("block-{:08}", blocks.len()));
                let answer = client
                    .put_block(url, &id, Bytes::from(content), CALL_TIMEOUT)
                    .await
                    .map_err(|e| unreachable(&e))?;
                if answer.status != 201 {
                    return Err(refused("write a block of the blob", &name, &answer));
                }
                blocks.push(id);
            }
            Target::Local { file, .. } => file
                .write_all(&content)
                .await
                .map_err(|e| local_error("write", &name, &e))?,
        }
        Ok(())
    }

    /// Gives the blob up: nothing appears under its name (a local container's partial file
    /// is removed; Azure Storage drops uncommitted blocks by itself).
    pub async fn abandon(self) {
        if let Target::Local { part, file, .. } = self.target {
            drop(file);
            let _ = tokio::fs::remove_file(&part).await;
        }
    }

    /// Completes the blob: it appears whole under its name.
    pub async fn finish(mut self) -> Result<(), ContainerError> {
        let one_call = matches!(&self.target, Target::Azure { blocks, .. } if blocks.is_empty());
        if !one_call {
            self.flush_block().await?;
        }
        let name = self.name;
        match self.target {
            Target::Azure {
                url,
                client,
                blocks,
            } => {
                let answer = if one_call {
                    client
                        .put_blob(&url, self.buffer, "application/octet-stream", CALL_TIMEOUT)
                        .await
                } else {
                    client
                        .put_block_list(&url, &blocks, "application/octet-stream", CALL_TIMEOUT)
                        .await
                }
                .map_err(|e| unreachable(&e))?;
                if answer.status != 201 {
                    return Err(refused("write the blob", &name, &answer));
                }
            }
            Target::Local {
                path,
                part,
                mut file,
            } => {
                file.flush()
                    .await
                    .map_err(|e| local_error("write", &name, &e))?;
                file.sync_all()
                    .await
                    .map_err(|e| local_error("write", &name, &e))?;
                drop(file);
                tokio::fs::rename(&part, &path)
                    .await
                    .map_err(|e| local_error("write", &name, &e))?;
            }
        }
        Ok(())
    }
}

/// A storage that could not be reached (the error names the host, never the SAS).
fn unreachable(e: &ClientError) -> ContainerError {
    ContainerError::Storage(format!("The blob container could not be reached: {e}"))
}

/// A storage's refusal, with its status and Azure Storage's error code.
fn refused(what: &str, name: &str, answer: &StorageResponse) -> ContainerError {
    let code = answer
        .headers
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    ContainerError::Storage(format!(
        "The blob container refused to {what} '{name}': {} {}{code}.",
        answer.status,
        answer.reason()
    ))
}

fn local_error(what: &str, name: &str, e: &std::io::Error) -> ContainerError {
    ContainerError::Storage(format!("Cannot {what} the blob '{name}': {e}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_uris() {
        for ok in [
            "https://acct.blob.core.windows.net/c?sv=1&sig=abc",
            "http://127.0.0.1:10000/devstoreaccount1/c?sig=x",
            "file:///var/lib/ironhub/export",
        ] {
            check_container_uri(ok).unwrap();
        }
        for bad in [
            "",
            "acct.blob.core.windows.net/c",
            "https://acct.blob.core.windows.net",
            "https://acct.blob.core.windows.net/?sig=x",
            "ftp://h/c",
            "file://relative/dir",
            "file:///",
        ] {
            assert!(
                matches!(check_container_uri(bad), Err(ContainerError::Invalid(_))),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn blob_names_and_urls() {
        check_blob_name("devices.txt").unwrap();
        check_blob_name("a/b c.txt").unwrap();
        for bad in ["", "..", "a/../b", "/a", "a//b", "a\\b", &"x".repeat(1025)] {
            assert!(check_blob_name(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            BlobContainer::blob_url("https://h/c", "sv=1&sig=a%2B", "a/b c#.txt"),
            "https://h/c/a/b%20c%23.txt?sv=1&sig=a%2B"
        );
    }

    #[tokio::test]
    async fn a_local_blob_appears_whole_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("file://{}", dir.path().display());
        let container = BlobContainer::open(&uri).unwrap();
        let mut writer = container.writer("sub/devices.txt").await.unwrap();
        writer.write(b"line 1\n").await.unwrap();
        assert!(!dir.path().join("sub/devices.txt").exists());
        writer.write(b"line 2\n").await.unwrap();
        writer.finish().await.unwrap();
        assert_eq!(
            container.read("sub/devices.txt", 1024).await.unwrap(),
            b"line 1\nline 2\n"
        );
        assert!(matches!(
            container.read("sub/devices.txt", 4).await,
            Err(ContainerError::Storage(_))
        ));
        assert!(matches!(
            container.read("missing.txt", 1024).await,
            Err(ContainerError::Storage(_))
        ));
        let gone = BlobContainer::open("file:///nonexistent-ironhub-dir").unwrap();
        assert!(matches!(
            gone.writer("devices.txt").await,
            Err(ContainerError::Storage(_))
        ));
    }
}
