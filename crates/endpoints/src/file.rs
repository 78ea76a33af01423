//! The file endpoint (IoT Hub's storage endpoint on a local directory). Each partition has at
//! most one open chunk: a temporary file in the container's `.ironhub-{endpoint}` directory
//! that messages are appended to. A chunk is closed when `batchFrequencyInSeconds` have passed
//! since it opened or when the next message would take its records past
//! `maxChunkSizeInBytes` (a single larger message fills a chunk alone); closing flushes,
//! fsyncs, renames it to its name by `fileNameFormat` (with `-1`, `-2`, … appended if that
//! name is taken) and fsyncs the directory. Only then are its messages reported delivered,
//! so a crash loses no message (the open chunk's messages are read again) and leaves no
//! partial file under a final name. Sizes count the encoded records before deflate.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::{Codec, DeflateSettings, Writer};
use async_trait::async_trait;
use chrono::Utc;
use ironhub_store::Event;
use tokio::time::Instant;

use crate::file_name::FileNameFormat;
use crate::record;
use crate::settings::{Encoding, EndpointConfigError, StorageContainerSettings};
use crate::sink::{Accepted, BatchError, DeliveryError, Sink};

/// A [`Sink`] writing chunks of messages to files (see the module documentation).
#[derive(Debug)]
pub struct FileSink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: String,
    directory: PathBuf,
    scratch: PathBuf,
    format: FileNameFormat,
    encoding: Encoding,
    frequency: Duration,
    max_bytes: u64,
    chunks: Mutex<HashMap<u32, Chunk>>,
}

enum ChunkWriter {
    Json(BufWriter<File>),
    Avro(Box<Writer<'static, BufWriter<File>>>),
}

impl std::fmt::Debug for ChunkWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChunkWriter::Json(_) => "Json",
            ChunkWriter::Avro(_) => "Avro",
        })
    }
}

#[derive(Debug)]
struct Chunk {
    temp: PathBuf,
    opened: Instant,
    opened_utc: chrono::DateTime<Utc>,
    bytes: u64,
    /// The sequence number after the chunk's last message.
    next: u64,
    /// The next message did not fit: close before taking more.
    full: bool,
    writer: ChunkWriter,
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::transient(format!("cannot {what} {}: {e}", path.display()))
}

impl FileSink {
    /// A sink for `settings` writing under `root` (for relative container names) as hub
    /// `hub`. Creates the container's directory; a partition's first chunk clears the
    /// temporary files a crash left for it.
    pub fn new(
        settings: &StorageContainerSettings,
        hub: &str,
        root: &Path,
    ) -> Result<FileSink, EndpointConfigError> {
        let directory = settings.directory(root);
        let scratch = directory.join(format!(".ironhub-{}", settings.name));
        std::fs::create_dir_all(&scratch).map_err(|e| {
            EndpointConfigError::new(format!(
                "containerName: cannot create {}: {e}",
                scratch.display()
            ))
        })?;
        Ok(FileSink {
            inner: Arc::new(Inner {
                hub: hub.to_owned(),
                directory,
                scratch,
                format: settings.file_name_format()?,
                encoding: settings.encoding.unwrap_or_default(),
                frequency: Duration::from_secs(u64::from(settings.batch_frequency_secs())),
                max_bytes: settings.max_chunk_bytes(),
                chunks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The directory the files go to.
    pub fn directory(&self) -> &Path {
        &self.inner.directory
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Chunk>> {
        self.chunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self, partition: u32, first: u64) -> Result<Chunk, DeliveryError> {
        // Made again if someone removed it while the server ran.
        std::fs::create_dir_all(&self.scratch).map_err(|e| io_error("create", &self.scratch, e))?;
        // What a crash left of the partition's chunks is void: its messages are read again.
        let prefix = format!("{partition}-");
        for entry in std::fs::read_dir(&self.scratch)
            .map_err(|e| io_error("read", &self.scratch, e))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let temp = self.scratch.join(format!("{partition}-{first}.tmp"));
        let file = File::create(&temp).map_err(|e| io_error("create", &temp, e))?;
        let out = BufWriter::new(file);
        let writer = match self.encoding {
            Encoding::Json => ChunkWriter::Json(out),
            Encoding::Avro => ChunkWriter::Avro(Box::new(Writer::with_codec(
                &record::AVRO_SCHEMA,
                out,
                Codec::Null,
            ))),
            Encoding::AvroDeflate => ChunkWriter::Avro(Box::new(Writer::with_codec(
                &record::AVRO_SCHEMA,
                out,
                Codec::Deflate(DeflateSettings::default()),
            ))),
        };
        Ok(Chunk {
            temp,
            opened: Instant::now(),
            opened_utc: Utc::now(),
            bytes: 0,
            next: first,
            full: false,
            writer,
        })
    }

    /// Appends what fits of `batch` to the partition's chunk; returns how many were taken.
    fn append(&self, batch: &[Event]) -> Result<usize, DeliveryError> {
        let Some(first) = batch.first() else {
            return Ok(0);
        };
        let partition = first.partition;
        let mut chunks = self.lock();
        if chunks.get(&partition).is_some_and(|c| c.full) {
            return Ok(0);
        }
        let mut taken = 0;
        for event in batch {
            enum Encoded {
                Line(Vec<u8>),
                Avro(apache_avro::types::Value),
            }
            let (encoded, size) = match self.encoding {
                Encoding::Json => {
                    let line = record::json_line(event);
                    let size = line.len() as u64;
                    (Encoded::Line(line), size)
                }
                Encoding::Avro | Encoding::AvroDeflate => {
                    let value = record::avro_record(event);
                    let size = apache_avro::to_avro_datum(&record::AVRO_SCHEMA, value.clone())
                        .map_err(|e| DeliveryError::permanent(format!("cannot encode: {e}")))?
                        .len() as u64;
                    (Encoded::Avro(value), size)
                }
            };
            if let Some(chunk) = chunks.get_mut(&partition)
                && chunk.bytes > 0
                && chunk.bytes + size > self.max_bytes
            {
                chunk.full = true;
                break;
            }
            let chunk = match chunks.entry(partition) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(self.open(partition, event.sequence_number)?)
                }
            };
            let temp = chunk.temp.clone();
            match (&mut chunk.writer, encoded) {
                (ChunkWriter::Json(out), Encoded::Line(line)) => {
                    out.write_all(&line)
                        .map_err(|e| io_error("write", &temp, e))?;
                }
                (ChunkWriter::Avro(w), Encoded::Avro(value)) => {
                    w.append(value).map_err(|e| io_error("write", &temp, e))?;
                }
                _ => return Err(DeliveryError::permanent("encoding mismatch")),
            }
            chunk.bytes += size;
            chunk.next = event.sequence_number + 1;
            taken += 1;
            if chunk.bytes >= self.max_bytes {
                chunk.full = true;
                break;
            }
        }
        Ok(taken)
    }

    /// Closes the partition's chunk if due (or `force`); the sequence number after it.
    fn close(&self, partition: u32, force: bool) -> Result<Option<u64>, DeliveryError> {
        let mut chunks = self.lock();
        let due = chunks
            .get(&partition)
            .is_some_and(|c| force || c.full || c.opened + self.frequency <= Instant::now());
        if !due {
            return Ok(None);
        }
        let Some(chunk) = chunks.remove(&partition) else {
            return Ok(None);
        };
        let temp = chunk.temp.clone();
        let result = self.finish(chunk, partition);
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map(Some)
    }

    fn finish(&self, chunk: Chunk, partition: u32) -> Result<u64, DeliveryError> {
        let temp = &chunk.temp;
        let out = match chunk.writer {
            ChunkWriter::Json(out) => out,
            ChunkWriter::Avro(w) => w.into_inner().map_err(|e| io_error("write", temp, e))?,
        };
        let file = out
            .into_inner()
            .map_err(|e| io_error("write", temp, e.error()))?;
        file.sync_all().map_err(|e| io_error("sync", temp, e))?;
        drop(file);
        let name = self.format.render(&self.hub, partition, chunk.opened_utc);
        let mut target = self.directory.join(&name);
        let mut n = 0;
        while target.exists() {
            n += 1;
            target = self.directory.join(format!("{name}-{n}"));
        }
        let parent = target.parent().unwrap_or(&self.directory).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| io_error("create", &parent, e))?;
        std::fs::rename(temp, &target).map_err(|e| io_error("rename to", &target, e))?;
        File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync", &parent, e))?;
        tracing::debug!(file = %target.display(), "file endpoint chunk closed");
        Ok(chunk.next)
    }

    fn discard(&self, partition: u32) {
        if let Some(chunk) = self.lock().remove(&partition) {
            let _ = std::fs::remove_file(&chunk.temp);
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeliveryError> + Send + 'static,
) -> Result<T, DeliveryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DeliveryError::transient(format!("file writer stopped: {e}")))?
}

#[async_trait]
impl Sink for FileSink {
    async fn deliver(&self, batch: &[Event]) -> Result<Accepted, BatchError> {
        let inner = self.inner.clone();
        let batch = batch.to_vec();
        blocking(move || inner.append(&batch))
            .await
            .map(Accepted::Buffered)
            .map_err(|error| BatchError {
                delivered: 0,
                error,
            })
    }

    fn buffering(&self) -> bool {
        true
    }

    async fn close_due(&self, partition: u32, force: bool) -> Result<Option<u64>, DeliveryError> {
        let inner = self.inner.clone();
        blocking(move || inner.close(partition, force)).await
    }

    fn due_at(&self, partition: u32) -> Option<Instant> {
        self.inner.lock().get(&partition).map(|c| {
            if c.full {
                Instant::now()
            } else {
                c.opened + self.inner.frequency
            }
        })
    }

    async fn discard(&self, partition: u32) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.discard(partition)).await;
    }
}
