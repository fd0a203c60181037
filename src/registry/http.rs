//! The OCI distribution API over HTTP (placeholder: being written).
