//! The command line beyond `serve`: the rough edges of `plan`/`apply`, and `records --format`.

mod edges;
mod records_formats;
