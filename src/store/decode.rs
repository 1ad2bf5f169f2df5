//! Reading the domain's types out of rows: a column stored as text is parsed into the type
//! it holds, once, here; a stored value the type refuses is a decoding error that names
//! the column, never a default.

use std::str::FromStr;

use sqlx::Row;
use sqlx::postgres::PgRow;

/// The text column `column` of `row`, parsed.
pub(crate) fn parsed<T>(row: &PgRow, column: &str) -> sqlx::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.try_get(column)?;
    text.parse().map_err(|e| refused(column, e))
}

/// The text column `column` of `row`, parsed; `None` when it is NULL.
pub(crate) fn parsed_or_null<T>(row: &PgRow, column: &str) -> sqlx::Result<Option<T>>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: Option<String> = row.try_get(column)?;
    text.map(|text| text.parse().map_err(|e| refused(column, e)))
        .transpose()
}

/// The decoding error of a stored value in `column` that its type refuses.
pub(crate) fn refused(
    column: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.into(),
        source: Box::new(e),
    }
}
