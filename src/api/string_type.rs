//! `string_type!`: the poem-openapi [`Type`](poem_openapi::types::Type) of a value written
//! on the wire as one string, its schema inline: [`super::day::Day`] and
//! [`super::timeframe::TimeframeParam`]. What it reads and writes is each type's own.

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
