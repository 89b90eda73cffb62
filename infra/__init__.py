"""r2r infrastructure: the CDK app, the embedded local stack, the ERP sandbox and the operator CLI."""
