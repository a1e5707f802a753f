//! Uploaded IDX image files, for predict runs. The body is the file itself (raw or gzipped);
//! it is streamed to disk, checked to be 28x28 images, and kept under the artifact directory
//! named by its sha256.
use crate::{
    auth::{Principal, Role, access, audit},
    error::ApiError,
    extract::unreadable_body,
    openapi::Reply,
    startup::AppState,
};
use actix_web::web;
use cairn_datasets::idx;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// A file being received: removed if the upload fails before it is kept.
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        // After a successful rename there is nothing left to remove.
        let _ = std::fs::remove_file(&self.0);
    }
}

fn internal(what: &str, err: std::io::Error) -> ApiError {
    ApiError::Internal(format!("{what}: {err}"))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The name to keep with the file, 1 to 200 characters (default `upload.idx`).
    file_name: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Upload {
    pub id: i64,
    pub file_name: String,
    pub bytes: i64,
    pub sha256: String,
    pub images: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /api/v1/experiments/{id}/uploads?file_name=digits.idx`: at most
/// `CAIRN_MAX_UPLOAD_BYTES`.
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    experiment_id: web::Path<i64>,
    query: web::Query<UploadQuery>,
    mut payload: web::Payload,
) -> Result<Reply<Upload, 201>, ApiError> {
    let experiment = access::experiment(&state.pool, who.user_id, *experiment_id, Role::Member).await?;
    let file_name = query.file_name.clone().unwrap_or_else(|| "upload.idx".to_owned());
    if file_name.is_empty() || file_name.len() > 200 || file_name.chars().any(char::is_control) {
        return Err(ApiError::invalid("file_name", "must be 1 to 200 characters without control characters"));
    }
    let folder = state.settings.artifact_dir.join("uploads");
    tokio::fs::create_dir_all(&folder).await.map_err(|err| internal("creating the upload folder", err))?;
    let partial = Partial(folder.join(format!(".partial-{}", hex::encode(rand::random::<[u8; 16]>()))));
    let mut file = tokio::fs::File::create(&partial.0).await.map_err(|err| internal("creating the upload", err))?;
    let (limit, mut hasher, mut bytes) = (state.settings.max_upload_bytes, Sha256::new(), 0usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(unreadable_body)?;
        bytes += chunk.len();
        if bytes > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|err| internal("writing the upload", err))?;
    }
    file.flush().await.map_err(|err| internal("writing the upload", err))?;
    drop(file);
    let sha256 = hex::encode(hasher.finalize());
    let path = partial.0.clone();
    let images = web::block(move || -> Result<usize, idx::IdxError> {
        let mut reader = idx::decompressing(std::fs::File::open(path)?)?;
        Ok(idx::read_images(&mut reader)?.len() / cairn_datasets::IMAGE_PIXELS)
    })
    .await
    .map_err(|err| ApiError::Internal(err.to_string()))?
    .map_err(|err| ApiError::invalid("body", format!("must be an IDX file of 28x28 images: {err}")))?;
    if images == 0 {
        return Err(ApiError::invalid("body", "must hold at least one image"));
    }
    // Named by content: the same file uploaded twice is stored once.
    let relative = format!("uploads/{sha256}.idx");
    tokio::fs::rename(&partial.0, state.settings.artifact_dir.join(&relative))
        .await
        .map_err(|err| internal("keeping the upload", err))?;

    let mut tx = state.pool.begin().await?;
    let upload: Upload = sqlx::query_as(
        "INSERT INTO uploads (team_id, user_id, file_name, path, bytes, sha256, images)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, file_name, bytes, sha256, images, created_at",
    )
    .bind(experiment.team_id)
    .bind(who.user_id)
    .bind(&file_name)
    .bind(&relative)
    .bind(bytes as i64)
    .bind(&sha256)
    .bind(images as i32)
    .fetch_one(&mut *tx)
    .await?;
    let entry = audit::Entry {
        user_id: who.user_id,
        team_id: Some(experiment.team_id),
        action: "upload.create",
        target_type: "upload",
        target_id: Some(upload.id),
        details: serde_json::json!({ "file_name": file_name, "bytes": bytes, "images": images }),
    };
    audit::record(&mut *tx, entry).await?;
    tx.commit().await?;
    Ok(Reply(upload))
}
