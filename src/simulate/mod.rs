//! A local stand-in for the Bedrock Agent Runtime endpoint. (Skeleton.)
