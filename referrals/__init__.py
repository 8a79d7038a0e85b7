"""referral-pipeline: the `referrals` command and the typed settings every part shares."""
