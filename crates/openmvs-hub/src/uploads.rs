//! Serial uploads, streamed: lines are read in chunks of `chunk_size`, each chunk is validated,
//! checked for repeats through keyed digests and committed as one unit of work (digests, one
//! serial message per target market, progress and rejections), so that no upload is ever held
//! in memory whole and the hub keeps no serial beyond the messages that carry them.

use openmvs_core::ids::{Batch, ProductCode, UploadId};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::upload::{UploadAccepted, UploadView, decide_chunk, screen_lines};
use openmvs_store::hub::{
    HubBatchRecord, HubUnitOfWork, NewUpload, OnDuplicate, SerialDigest, SerialDigests, UploadOutcome,
    UploadProgress, UploadRejection,
};
use openmvs_store::{BoxFuture, Conflict, StoreError};
use openmvs_wire::hub::{Message, PacksMsg};
use serde_json::json;

use crate::{
    ApiError, Hub, MAX_ECHO_CHARS, MAX_LISTED_REJECTIONS, Record, message_to, new_id, serial_digest, subject,
};

/// How often a chunk is decided again after a concurrent upload inserted one of its serials.
const MAX_CHUNK_ATTEMPTS: usize = 8;

/// Where the lines of an upload come from: the HTTP layer turns a JSON list or a text body into
/// lines (without their terminators) and hands them over one at a time, so that the hub never
/// needs the whole body.
pub trait LineSource: Send {
    /// The next line; `None` at the end; `Err` when the body broke off (the upload fails).
    fn next_line(&mut self) -> BoxFuture<'_, Option<Result<String, String>>>;
}

/// Lines from an iterator.
pub struct IterLines<I>(pub I);

impl<I: Iterator<Item = String> + Send> LineSource for IterLines<I> {
    fn next_line(&mut self) -> BoxFuture<'_, Option<Result<String, String>>> {
        Box::pin(std::future::ready(self.0.next().map(Ok)))
    }
}

/// Lines from a bounded channel, filled by a task that reads the request body.
impl LineSource for tokio::sync::mpsc::Receiver<Result<String, String>> {
    fn next_line(&mut self) -> BoxFuture<'_, Option<Result<String, String>>> {
        Box::pin(self.recv())
    }
}

/// Numbered lines, with empty lines at the very end dropped: an empty line counts (and is
/// rejected) only once a non-empty line follows it. Consecutive empty lines are held as a count,
/// so memory stays bounded whatever the body holds.
struct Lines<S> {
    src: S,
    line: u64,
    empty_from: u64,
    empty_count: u64,
    held: Option<(u64, String)>,
}

impl<S: LineSource> Lines<S> {
    fn new(src: S) -> Lines<S> {
        Lines { src, line: 0, empty_from: 0, empty_count: 0, held: None }
    }

    async fn next(&mut self) -> Result<Option<(u64, String)>, String> {
        loop {
            if self.held.is_some() && self.empty_count > 0 {
                let n = self.empty_from;
                self.empty_from += 1;
                self.empty_count -= 1;
                return Ok(Some((n, String::new())));
            }
            if let Some(l) = self.held.take() {
                return Ok(Some(l));
            }
            match self.src.next_line().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(text)) => {
                    self.line += 1;
                    if text.is_empty() {
                        if self.empty_count == 0 {
                            self.empty_from = self.line;
                        }
                        self.empty_count += 1;
                    } else {
                        self.held = Some((self.line, text));
                    }
                }
            }
        }
    }
}

/// One chunk, decided: what to reject and what to send.
struct Decided {
    digests: Vec<SerialDigest>,
    serials: Vec<String>,
    rejections: Vec<UploadRejection>,
}

fn rejection(line: u64, text: &str, reason: String) -> UploadRejection {
    UploadRejection { line, serial: text.chars().take(MAX_ECHO_CHARS).collect(), reason }
}

impl Hub {
    /// `POST /v1/products/{product_code}/batches/{batch}/packs`: reads the serials line by line,
    /// in chunks of `chunk_size`; rejects per line what is not a serial or repeats a serial of the
    /// product (within the upload or from an earlier one); commits each chunk as one unit of
    /// work; and answers only when every chunk is durable. The serials then go to every target
    /// market of the batch through the relay.
    pub async fn upload_serials(
        &self,
        obp: &str,
        product_code: &str,
        batch: &str,
        lines: impl LineSource,
    ) -> Result<UploadAccepted, ApiError> {
        self.caller(obp).await?;
        let product = self.owned_product(obp, product_code).await?;
        let pc = product.product_code;
        let b = Batch::new(batch).map_err(|e| ApiError::malformed("batch", format!("'{batch}' {e}")))?;
        let Some(record) = self.store.batch(&pc, &b).await? else {
            return Err(ApiError::not_found("batch", format!("no batch '{batch}' of {pc}")));
        };
        let now = self.clock.now();
        let upload = NewUpload {
            id: new_id("UPL", now).into(),
            obp: obp.into(),
            product_code: pc.clone(),
            batch: b.clone(),
            markets: record.markets.clone(),
            created_at: now,
        };
        let id = upload.id.clone();
        let mut new_upload = Some(upload);
        let mut lines = Lines::new(lines);
        let mut next = lines.next().await;
        let (mut received, mut rejected, mut chunk_no) = (0u64, 0u64, 0u64);
        loop {
            let mut items = Vec::with_capacity(self.config.chunk_size.min(100_000));
            let mut broken = None;
            while items.len() < self.config.chunk_size {
                match std::mem::replace(&mut next, Ok(None)) {
                    Ok(Some(item)) => {
                        items.push(item);
                        next = lines.next().await;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            if let Some(why) = broken.or_else(|| next.as_ref().err().cloned()) {
                self.fail_upload(&id, &mut new_upload, obp, &pc, &b, "the body broke off").await?;
                return Err(ApiError::malformed("body", format!("the upload broke off: {why}")));
            }
            received += items.len() as u64;
            if received > self.config.max_upload_lines {
                self.fail_upload(&id, &mut new_upload, obp, &pc, &b, "too many lines").await?;
                return Err(ApiError::new(ReturnCode::TooLarge).with(
                    "body",
                    format!("an upload carries at most {} serials", self.config.max_upload_lines),
                ));
            }
            let last = matches!(next, Ok(None));
            chunk_no += 1;
            rejected += self
                .commit_chunk(
                    &id,
                    &mut new_upload,
                    obp,
                    &record,
                    chunk_no,
                    &items,
                    last,
                    (received, rejected),
                )
                .await?;
            if last {
                return Ok(UploadAccepted { upload_id: id, received });
            }
        }
    }

    /// Decides one chunk and commits it, deciding again if a concurrent upload inserted one of
    /// its serials meanwhile; returns how many lines it rejected.
    #[allow(clippy::too_many_arguments)]
    async fn commit_chunk(
        &self,
        id: &UploadId,
        new_upload: &mut Option<NewUpload>,
        obp: &str,
        batch: &HubBatchRecord,
        chunk_no: u64,
        items: &[(u64, String)],
        last: bool,
        (received, rejected_before): (u64, u64),
    ) -> Result<u64, ApiError> {
        let pc = &batch.product_code;
        for _ in 0..MAX_CHUNK_ATTEMPTS {
            let d = self.decide_chunk(pc, items).await?;
            let rejected = d.rejections.len() as u64;
            let mut chunks = Vec::new();
            if !d.serials.is_empty() {
                for m in &batch.markets {
                    let body = Message::Packs(PacksMsg {
                        scheme: pc.scheme().as_str().to_owned(),
                        product_code: pc.as_str().to_owned(),
                        batch: batch.batch.as_str().to_owned(),
                        serials: d.serials.clone(),
                    });
                    chunks.push(message_to(*m, format!("{id}-{chunk_no}-{m}"), pc, body));
                }
            }
            let mut uow = HubUnitOfWork {
                new_upload: new_upload.clone(),
                upload_progress: Some(UploadProgress {
                    id: id.clone(),
                    received: items.len() as u64,
                    rejections: d.rejections,
                    chunks,
                    outcome: last.then_some(UploadOutcome::Validated),
                }),
                ..HubUnitOfWork::default()
            };
            if !d.digests.is_empty() {
                uow.serials.push(SerialDigests {
                    product_code: pc.clone(),
                    digests: d.digests,
                    on_duplicate: OnDuplicate::Refuse,
                });
            }
            if last {
                // Counts only: the audit trail never holds a serial.
                let request = json!({"upload_id": id.as_str(), "batch": batch.batch.as_str()});
                let result =
                    json!({"received": received, "rejected": rejected_before + rejected, "chunks": chunk_no});
                let subj = format!("{}/{}", subject(pc), batch.batch);
                let r = Record {
                    operation: "upload",
                    subject: &subj,
                    code: ReturnCode::Success,
                    request: &request,
                    result: &result,
                };
                uow.audit.push(self.entry(obp, self.clock.now(), r));
            }
            match self.commit(uow).await {
                Ok(()) => {
                    *new_upload = None;
                    return Ok(rejected);
                }
                // A concurrent upload inserted one of these serials: read again, decide again.
                Err(StoreError::Conflict(Conflict::Exists(_))) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable(format!("chunk {chunk_no} of upload {id} kept conflicting")))
    }

    /// Decides a chunk ([`openmvs_core::upload`]): each line a serial, not repeated within the
    /// upload's chunk (by digest) nor uploaded before (asked of the store); the rest in line order.
    async fn decide_chunk(&self, pc: &ProductCode, items: &[(u64, String)]) -> Result<Decided, ApiError> {
        let screened = screen_lines(items, |s| serial_digest(&self.config.serial_key, pc, s));
        // Digests are random, so a chunk in line order visits the index's pages at random, and a
        // page leaves the store's cache before the next digest on it comes: looked up and
        // inserted in digest order, each page is visited once per chunk.
        let candidates = &screened.candidates;
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_unstable_by(|a, b| candidates[*a].digest.as_bytes().cmp(candidates[*b].digest.as_bytes()));
        let digests: Vec<SerialDigest> = order.iter().map(|i| candidates[*i].digest).collect();
        let mut uploaded_before = vec![false; candidates.len()];
        for j in self.store.present(pc, &digests).await? {
            uploaded_before[order[j]] = true;
        }
        let (accepted, refused) = decide_chunk(screened, &uploaded_before);
        let mut digests: Vec<SerialDigest> = accepted.iter().map(|c| c.digest).collect();
        digests.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(Decided {
            digests,
            serials: accepted.iter().map(|c| c.text.to_owned()).collect(),
            rejections: refused.into_iter().map(|r| rejection(r.line, r.text, r.reason)).collect(),
        })
    }

    /// Ends an upload as FAILED (what was committed stays, and is distributed).
    async fn fail_upload(
        &self,
        id: &UploadId,
        new_upload: &mut Option<NewUpload>,
        obp: &str,
        pc: &ProductCode,
        batch: &Batch,
        why: &str,
    ) -> Result<(), ApiError> {
        let request = json!({"upload_id": id.as_str(), "batch": batch.as_str()});
        let result = json!({"failed": why});
        let subj = format!("{}/{batch}", subject(pc));
        let r = Record {
            operation: "upload",
            subject: &subj,
            code: ReturnCode::MalformedRequest,
            request: &request,
            result: &result,
        };
        let uow = HubUnitOfWork {
            new_upload: new_upload.take(),
            upload_progress: Some(UploadProgress {
                outcome: Some(UploadOutcome::Failed),
                ..UploadProgress::new(id.clone())
            }),
            audit: vec![self.entry(obp, self.clock.now(), r)],
            ..HubUnitOfWork::default()
        };
        self.commit(uow).await?;
        Ok(())
    }

    /// `GET /v1/uploads/{id}`: the upload's status, counts, the first [`MAX_LISTED_REJECTIONS`]
    /// rejected lines and per-market delivery. Another OBP's upload is 404, as if it did not exist.
    pub async fn upload(&self, obp: &str, id: &str) -> Result<UploadView, ApiError> {
        self.caller(obp).await?;
        let not_found = || ApiError::not_found("upload_id", format!("no upload '{id}'"));
        let upload_id = UploadId::from(id);
        let u = self.store.upload(&upload_id).await?.filter(|u| u.obp == obp).ok_or_else(not_found)?;
        let rejected = self.store.upload_rejections(&upload_id, 0, MAX_LISTED_REJECTIONS).await?;
        Ok(UploadView {
            id: u.id,
            product_code: u.product_code,
            batch: u.batch,
            status: u.status,
            received: u.received,
            rejected_count: u.rejected,
            rejected,
            markets: u.markets.iter().map(|m| (m.market, m.status)).collect(),
        })
    }
}
