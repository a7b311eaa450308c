//! Datasets and the verified downloader that fetches them.
//!
//! (Being written: the dataset loaders follow; [`download`] is ready.)

pub mod download;
