"""Compliance evidence: collectors read the live system; evaluators and renderers turn it into a pack."""

# Where data may reside unless the organisation says otherwise (ITAR: AWS GovCloud (US)).
GOVCLOUD = ("us-gov-west-1", "us-gov-east-1")

# How recent a passed restore drill must be (days) unless the organisation says otherwise: the seed
# asks for quarterly restoration tests.
DRILL_MAX_AGE_DAYS = 92
