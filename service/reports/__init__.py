"""Training reports and classification scores: `store` reads a report, `writer` writes one (plots and all),
`compare` sets several side by side, `scores` holds the metric maths both reports and evaluation use."""
