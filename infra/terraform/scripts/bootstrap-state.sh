#!/usr/bin/env bash
# Creates the remote-state storage once per subscription (run by an owner with the Azure CLI):
#
#   infra/terraform/scripts/bootstrap-state.sh <location> [resource-group] [storage-account]
#
# A resource group, a storage account (ZRS, TLS 1.2, no public blob access, no shared keys,
# versioning and soft delete so an overwritten state can be restored) and a "tfstate" container.
# Terraform locks a state by taking a lease on its blob; nothing else is needed for locking.
set -euo pipefail
location="${1:?usage: $0 <location> [resource-group] [storage-account]}"
rg="${2:-liveops-tfstate-rg}"
sa="${3:-liveopstfstate}"

az group create --name "$rg" --location "$location" --output none
az storage account create --name "$sa" --resource-group "$rg" --location "$location" \
  --sku Standard_ZRS --kind StorageV2 --min-tls-version TLS1_2 --https-only true \
  --allow-blob-public-access false --allow-shared-key-access false --output none
az storage account blob-service-properties update --account-name "$sa" --resource-group "$rg" \
  --enable-versioning true --enable-delete-retention true --delete-retention-days 30 \
  --enable-container-delete-retention true --container-delete-retention-days 30 --output none
# The signed-in principal writes state with Entra ID (use_azuread_auth = true in backend.hcl).
me="$(az ad signed-in-user show --query id -o tsv 2>/dev/null || az account show --query user.name -o tsv)"
az role assignment create --assignee "$me" --role "Storage Blob Data Contributor" \
  --scope "$(az storage account show --name "$sa" --resource-group "$rg" --query id -o tsv)" --output none
az storage container create --name tfstate --account-name "$sa" --auth-mode login --output none
echo "state storage ready: resource_group_name=$rg storage_account_name=$sa container_name=tfstate"
