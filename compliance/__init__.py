"""Compliance evidence: collectors read the live system; evaluators and renderers turn it into a pack."""

# Where data may reside unless the organisation says otherwise (ITAR: AWS GovCloud (US)).
GOVCLOUD = ("us-gov-west-1", "us-gov-east-1")
