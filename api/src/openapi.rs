//! The OpenAPI 3.1 document of the REST API, derived from the handlers' own types so it cannot
//! drift: a route's parameters, request body and errors come from its extractors
//! (`Principal`, `web::Path`, `web::Query<T>`, `JsonBody<T>`, `web::Payload`), its responses
//! from its return type (`Reply<T, STATUS>`), and every schema from those types' `JsonSchema`.
//! `routes::ROUTES` lists each route once, for the server and for this document alike.
use crate::{auth::Principal, error::ApiError, extract::JsonBody};
use actix_web::{HttpResponse, Responder, body::BoxBody, http::StatusCode, web};
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A JSON response with the status the document promises. Handlers return it instead of a
/// bare `HttpResponse`, so their body type is known here.
pub struct Reply<T, const STATUS: u16 = 200>(pub T);

impl<T: Serialize, const STATUS: u16> Responder for Reply<T, STATUS> {
    type Body = BoxBody;

    fn respond_to(self, _: &actix_web::HttpRequest) -> HttpResponse {
        HttpResponse::build(StatusCode::from_u16(STATUS).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)).json(&self.0)
    }
}

/// A file sent as it is stored (artifacts).
pub struct Download(pub HttpResponse);

impl Responder for Download {
    type Body = BoxBody;

    fn respond_to(self, _: &actix_web::HttpRequest) -> HttpResponse {
        self.0
    }
}

/// What one operation says, filled in by its extractors and its return type.
#[derive(Default)]
pub struct Operation {
    parameters: Vec<Value>,
    request_body: Option<Value>,
    responses: BTreeMap<u16, Value>,
    secured: bool,
}

impl Operation {
    fn respond(&mut self, status: u16, description: &str, media_type: &str, schema: Value) {
        let response = json!({ "description": description, "content": { media_type: { "schema": schema } } });
        self.responses.insert(status, response);
    }

    /// An error answered with the JSON error body, and an example of it. A second cause of
    /// the same status adds to its description and keeps the first example.
    fn error(&mut self, status: u16, code: &str, description: &str, example_message: &str) {
        if let Some(known) = self.responses.get_mut(&status) {
            let joined = format!("{}; or: {description}", known["description"].as_str().unwrap_or_default());
            known["description"] = Value::String(joined);
            return;
        }
        let example = json!({ "error": code, "message": example_message });
        let content = json!({ "application/json": {
            "schema": { "$ref": "#/components/schemas/ErrorBody" }, "example": example,
        }});
        self.responses.insert(status, json!({ "description": description, "content": content }));
    }
}

/// What an extractor adds to the operation of a handler that takes it.
pub trait Input {
    fn describe(operation: &mut Operation, schemas: &mut SchemaGenerator);
}

/// What a handler's return type says about its responses.
pub trait Output {
    fn describe(operation: &mut Operation, schemas: &mut SchemaGenerator);
}

impl<T: ?Sized> Input for web::Data<T> {
    fn describe(_: &mut Operation, _: &mut SchemaGenerator) {}
}

impl Input for Principal {
    fn describe(operation: &mut Operation, _: &mut SchemaGenerator) {
        operation.secured = true;
        operation.error(401, "unauthorized", "No valid bearer token", "a valid bearer token is required");
        operation.error(403, "forbidden", "The caller's role in the team is too low", "this needs the member role");
        operation.error(429, "rate_limited", "Over the rate limit; see `Retry-After`", "too many requests");
    }
}

impl<T> Input for web::Path<T> {
    fn describe(operation: &mut Operation, _: &mut SchemaGenerator) {
        operation.error(404, "not_found", "No such resource in the caller's teams", "run not found");
    }
}

impl<T: JsonSchema> Input for web::Query<T> {
    fn describe(operation: &mut Operation, schemas: &mut SchemaGenerator) {
        let schema = T::json_schema(schemas);
        let required: Vec<&str> =
            schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let properties = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        for (name, property) in properties {
            let mut parameter = json!({ "name": name, "in": "query", "required": required.contains(&name.as_str()) });
            if let Some(description) = property.get("description") {
                parameter["description"] = description.clone();
            }
            parameter["schema"] = property;
            operation.parameters.push(parameter);
        }
        operation.error(
            400,
            "invalid_query",
            "A query parameter does not parse",
            "limit: invalid digit found in string",
        );
        operation.error(422, "invalid_value", "A query parameter breaks a rule", "limit: must be between 1 and 1000");
    }
}

impl<T: JsonSchema> Input for JsonBody<T> {
    fn describe(operation: &mut Operation, schemas: &mut SchemaGenerator) {
        let schema = schema_of::<T>(schemas);
        operation.request_body =
            Some(json!({ "required": true, "content": { "application/json": { "schema": schema } } }));
        operation.error(
            400,
            "invalid_type",
            "The body is not JSON of this shape",
            "params.epochs: invalid type: string \"3\", expected u32",
        );
        operation.error(
            413,
            "payload_too_large",
            "The body is larger than `CAIRN_MAX_BODY_BYTES`",
            "the body is over 1048576 bytes",
        );
        operation.error(
            422,
            "invalid_value",
            "A value breaks a rule; `field` names it",
            "params.epochs: must be between 1 and 1000",
        );
    }
}

impl Input for web::Payload {
    fn describe(operation: &mut Operation, _: &mut SchemaGenerator) {
        let schema = bytes_schema();
        operation.request_body =
            Some(json!({ "required": true, "content": { "application/octet-stream": { "schema": schema } } }));
        operation.error(413, "payload_too_large", "The body is larger than allowed", "the upload is over its limit");
        operation.error(422, "invalid_value", "The body breaks a rule", "file: not an IDX file of 28x28 images");
    }
}

macro_rules! tuple_input {
    ($($name:ident)*) => {
        impl<$($name: Input),*> Input for ($($name,)*) {
            #[allow(unused_variables)]
            fn describe(operation: &mut Operation, schemas: &mut SchemaGenerator) {
                $($name::describe(operation, schemas);)*
            }
        }
    };
}
tuple_input!();
tuple_input!(A);
tuple_input!(A B);
tuple_input!(A B C);
tuple_input!(A B C D);
tuple_input!(A B C D E);

impl<T: JsonSchema, const STATUS: u16> Output for Reply<T, STATUS> {
    fn describe(operation: &mut Operation, schemas: &mut SchemaGenerator) {
        let description = StatusCode::from_u16(STATUS).ok().and_then(|s| s.canonical_reason()).unwrap_or("Done");
        operation.respond(STATUS, description, "application/json", schema_of::<T>(schemas));
    }
}

impl Output for Download {
    fn describe(operation: &mut Operation, _: &mut SchemaGenerator) {
        let schema = bytes_schema();
        operation.respond(200, "The file", "application/octet-stream", schema);
    }
}

impl<A: Output, B: Output> Output for actix_web::Either<A, B> {
    fn describe(operation: &mut Operation, schemas: &mut SchemaGenerator) {
        A::describe(operation, schemas);
        B::describe(operation, schemas);
    }
}

impl<T: Output> Output for Result<T, ApiError> {
    fn describe(operation: &mut Operation, schemas: &mut SchemaGenerator) {
        T::describe(operation, schemas);
        operation.error(500, "internal", "A bug; the server logged it", "internal error");
        operation.error(
            503,
            "unavailable",
            "Postgres is unreachable; see `Retry-After`",
            "the database is unavailable",
        );
    }
}

/// What the route table says of a route besides its handler.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// The handler's path, such as `runs::submit`: the operation's id and tag.
    pub name: &'static str,
    pub summary: &'static str,
}

/// The document being assembled, one operation per route.
pub struct Document {
    schemas: SchemaGenerator,
    paths: Map<String, Value>,
}

impl Default for Document {
    fn default() -> Self {
        // `{}` rather than `true` for "any JSON": the same schema, which more OpenAPI tools read.
        let settings = SchemaSettings::draft2020_12()
            .with(|s| {
                s.definitions_path = "#/components/schemas/".into();
                s.meta_schema = None;
            })
            .with_transform(schemars::transform::ReplaceBoolSchemas::default());
        let mut schemas = settings.into_generator();
        schemas.subschema_for::<crate::error::ErrorBody>();
        Self { schemas, paths: Map::new() }
    }
}

impl Document {
    /// Adds a route served by `handler`, described by its argument and return types, and the
    /// conflict (code, when) it may answer with.
    pub fn route<H, Args>(&mut self, route: Route, conflict: Option<(&str, &str)>, _handler: &H)
    where
        H: actix_web::Handler<Args>,
        Args: Input,
        H::Output: Output,
    {
        let Route { method, path, name, summary } = route;
        let mut operation = Operation::default();
        if let Some((code, when)) = conflict {
            operation.error(409, code, &format!("Refused: {when}"), when);
        }
        Args::describe(&mut operation, &mut self.schemas);
        <H::Output as Output>::describe(&mut operation, &mut self.schemas);
        let mut parameters: Vec<Value> = path_parameters(path)
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "integer", "format": "int64" } }))
            .collect();
        parameters.append(&mut operation.parameters);
        if method == "post" && crate::idempotency::applies_to(path) {
            parameters.push(json!({
                "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": crate::idempotency::MAX_KEY_CHARS },
                "description": "Within 24 hours, the same key and body answer the first response again and create nothing; \
                    the same key with another body answers 422.",
            }));
            operation.error(
                422,
                "invalid_value",
                "A value breaks a rule, or the Idempotency-Key was used with another body",
                "was used for a different request in the last 24 hours; use a new key",
            );
            operation.error(
                409,
                "request_in_progress",
                "A request with this Idempotency-Key is still being answered",
                "a request with this Idempotency-Key is still in progress; retry in a moment",
            );
        }
        let mut entry = json!({
            "operationId": name.replace("::", "_"),
            "summary": summary,
            "tags": [name.split("::").next().unwrap_or(name)],
            "responses": operation.responses.iter().map(|(status, response)| (status.to_string(), response.clone())).collect::<Map<_, _>>(),
        });
        if !parameters.is_empty() {
            entry["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = operation.request_body {
            entry["requestBody"] = body;
        }
        entry["security"] = if operation.secured { json!([{ "bearer": [] }]) } else { json!([]) };
        let item = self.paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        item[method] = entry;
    }

    pub fn finish(mut self) -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Cairn",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Experiments, runs, sweeps and queues of Cairn. Send `Authorization: Bearer <token>` \
                    (from `POST /api/v1/tokens` or `./dev token`). Every POST takes an `Idempotency-Key` header: the same \
                    key and body within 24 hours answer the first response again; the same key with another body answers 422.",
            },
            "paths": self.paths,
            "components": {
                "schemas": self.schemas.take_definitions(true),
                "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            },
        })
    }
}

/// A reference to `T`'s schema, or the schema itself when it is inline; `{}` rather than
/// `true` for "any JSON", as in the components.
fn schema_of<T: JsonSchema>(schemas: &mut SchemaGenerator) -> Value {
    let mut schema = schemas.subschema_for::<T>();
    schemars::transform::Transform::transform(&mut schemars::transform::ReplaceBoolSchemas::default(), &mut schema);
    schema.into()
}

/// A body of raw bytes (an upload, a downloaded file).
fn bytes_schema() -> Value {
    json!({ "type": "string", "contentMediaType": "application/octet-stream" })
}

/// The names in `{braces}` of a route's path.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}
