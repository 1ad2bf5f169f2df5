//! The formats an export writes, as freqtrade names them (`dataformat_ohlcv`), plus CSV.

use crate::domain::{Symbol, Timeframe, stored_as_text, text_form};

/// A file format of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Arrow IPC file, LZ4-compressed: freqtrade's default.
    Feather,
    Parquet,
    /// A JSON list of `[ms, open, high, low, close, volume]`.
    Json,
    /// The same, gzipped (`.json.gz`).
    JsonGz,
    /// `date,open,high,low,close,volume,source` with ISO dates.
    Csv,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Feather,
        Format::Parquet,
        Format::Json,
        Format::JsonGz,
        Format::Csv,
    ];

    /// As `--format` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Feather => "feather",
            Format::Parquet => "parquet",
            Format::Json => "json",
            Format::JsonGz => "jsongz",
            Format::Csv => "csv",
        }
    }

    /// The file name's extension, as freqtrade looks for it.
    pub fn extension(self) -> &'static str {
        match self {
            Format::JsonGz => "json.gz",
            other => other.as_str(),
        }
    }

    /// The media type an HTTP answer in this format carries.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Feather => "application/vnd.apache.arrow.file",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Json => "application/json",
            Format::JsonGz => "application/gzip",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// A coin's file in freqtrade's layout: `{SYMBOL}_USD-{timeframe}.{ext}`.
    pub fn file_name(self, symbol: Symbol, timeframe: Timeframe) -> String {
        format!("{symbol}_USD-{timeframe}.{}", self.extension())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an export format: one of feather, parquet, json, jsongz, csv")]
pub struct UnknownFormat(pub String);

stored_as_text!(Format, UnknownFormat);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assert_reads_back;

    #[test]
    fn files_are_named_as_freqtrade_looks_for_them() {
        let eth = Symbol::parse("eth").unwrap();
        let names: Vec<String> = Format::ALL
            .iter()
            .map(|format| format.file_name(eth, Timeframe::Hour))
            .collect();
        assert_eq!(
            names,
            [
                "ETH_USD-1h.feather",
                "ETH_USD-1h.parquet",
                "ETH_USD-1h.json",
                "ETH_USD-1h.json.gz",
                "ETH_USD-1h.csv"
            ]
        );
        assert_eq!(
            "xlsx".parse::<Format>().unwrap_err().to_string(),
            "\"xlsx\" is not an export format: one of feather, parquet, json, jsongz, csv"
        );
        assert_reads_back(&Format::ALL, "xlsx");
    }
}
