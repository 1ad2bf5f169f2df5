//! The poem-openapi impls the API's own wire types share: `string_type!`, the
//! [`Type`](poem_openapi::types::Type) of a value written as one string, its schema inline
//! ([`super::day::Day`], [`super::timeframe::TimeframeParam`]); `text_payload!`, a body of
//! text answered with its media type (the prices' CSV, the Prometheus exposition);
//! `mirrored!`, an enum of the document that shows a domain enum variant for variant (a
//! job's status and trigger).

/// `string_type!(T, "name", schema)`: `T` is a required value named `name`, documented
/// inline as `schema` (a `MetaSchema`).
macro_rules! string_type {
    ($type:ty, $name:literal, $schema:expr) => {
        impl poem_openapi::types::Type for $type {
            const IS_REQUIRED: bool = true;

            type RawValueType = Self;

            type RawElementValueType = Self;

            fn name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                poem_openapi::registry::MetaSchemaRef::Inline(Box::new($schema))
            }

            fn as_raw_value(&self) -> Option<&Self::RawValueType> {
                Some(self)
            }

            fn raw_element_iter<'a>(
                &'a self,
            ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }
    };
}
pub(super) use string_type;

/// `text_payload!(T, "media/type")`: `T(String)` is a body of text answered (200) with that
/// `Content-Type`, documented as a string.
macro_rules! text_payload {
    ($type:ty, $media_type:literal) => {
        impl poem_openapi::payload::Payload for $type {
            const CONTENT_TYPE: &'static str = $media_type;

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                <String as poem_openapi::types::Type>::schema_ref()
            }
        }

        impl poem::IntoResponse for $type {
            fn into_response(self) -> poem::Response {
                poem::Response::builder()
                    .status(poem::http::StatusCode::OK)
                    .content_type($media_type)
                    .body(self.0)
            }
        }
    };
}
pub(super) use text_payload;

/// `mirrored! { pub enum Wire as Domain { A, B } }`: `Wire`, an enum of the document that
/// shows the domain's `Domain` on the wire variant for variant, with `From` both ways, so
/// that the variants are listed once here and a variant added to one side and not the
/// other does not compile.
macro_rules! mirrored {
    (
        $(#[$attr:meta])*
        $vis:vis enum $wire:ident as $domain:ident {
            $($(#[$doc:meta])* $variant:ident,)+
        }
    ) => {
        $(#[$attr])*
        $vis enum $wire {
            $($(#[$doc])* $variant,)+
        }

        impl From<$domain> for $wire {
            fn from(value: $domain) -> Self {
                match value {
                    $($domain::$variant => $wire::$variant,)+
                }
            }
        }

        impl From<$wire> for $domain {
            fn from(value: $wire) -> Self {
                match value {
                    $($wire::$variant => $domain::$variant,)+
                }
            }
        }
    };
}
pub(super) use mirrored;

/// A required field of a request body, named in the refusal: missing or null, it is
/// "`field` is missing: give it as `shape`"; malformed, the parser's words after the
/// field's name. poem-openapi's own words name the type, never the field
/// (`Expected input type "string_date", found null`). For `#[oai(deserialize_with)]`.
pub fn required<T: poem_openapi::types::ParseFromJSON>(
    value: Option<serde_json::Value>,
    field: &str,
    shape: &str,
) -> poem_openapi::types::ParseResult<T> {
    use poem_openapi::types::ParseError;
    match value {
        None | Some(serde_json::Value::Null) => Err(ParseError::custom(format!(
            "`{field}` is missing: give it as {shape}"
        ))),
        value => T::parse_from_json(value)
            .map_err(|e| ParseError::custom(format!("`{field}`: {}", e.into_message()))),
    }
}
