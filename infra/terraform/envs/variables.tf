variable "subscription_id" {
  type        = string
  description = "Azure subscription the environment is deployed to."

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.subscription_id))
    error_message = "subscription_id must be a GUID."
  }
}

variable "environment" {
  type        = string
  description = "Which environment this is: dev or prod, set by dev.tfvars or prod.tfvars (tests/check_structure.py checks each names itself), put in the env tag of every resource."
}

variable "location" {
  type        = string
  description = "Azure region with three availability zones, e.g. westeurope."
  default     = "westeurope"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name, e.g. liveops-prod (set by the environment's .tfvars)."
}

variable "address_space" {
  type        = string
  description = "CIDR of the environment's virtual network (a /16; set by the environment's .tfvars)."
}

variable "admin_ssh_cidr" {
  type        = string
  description = "CIDR (bastion or VPN) allowed to SSH to the MySQL VM; empty closes SSH."
  default     = ""
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of the cluster."
  default     = "1.32"
}

variable "aks_admin_group_object_ids" {
  type        = list(string)
  description = "Entra ID groups that administer the cluster."
}

variable "api_authorized_ip_ranges" {
  type        = list(string)
  description = "CIDRs allowed to reach a public API server (dev): CI agents and developers. Unused by a private cluster (prod)."
  default     = []

  validation {
    condition     = !contains(var.api_authorized_ip_ranges, "0.0.0.0/0")
    error_message = "List the CIDRs, not 0.0.0.0/0."
  }
}

variable "terraform_runner_ip_ranges" {
  type        = list(string)
  description = "Egress CIDRs of the Terraform runner (and in dev the developers), let through the Key Vault firewall while the vault has a public endpoint (dev; prod only during its first apply). Empty when Terraform runs inside the virtual network."
  default     = []
}

variable "acr_name" {
  type        = string
  description = "Globally unique registry name (set by the environment's .tfvars); each Kustomize overlay pulls from its own (prod liveopsacr, dev liveopsdevacr) and ci/Jenkinsfile pushes to both (PROD_ACR_NAME, DEV_ACR_NAME)."
}

variable "key_vault_name" {
  type        = string
  description = "Globally unique Key Vault name (set by the environment's .tfvars)."
}

variable "ci_principal_object_id" {
  type        = string
  description = "Object ID of the Jenkins service principal, given AcrPush on the registry and Grafana Editor on the managed Grafana (it imports the dashboards)."
}

variable "gateway_hostnames" {
  type        = list(string)
  description = "Public host names of the game API, in the gateway's TLS certificate (the first is its subject)."
}

variable "gateway_certificate_issuer" {
  type        = string
  description = "Key Vault certificate issuer of the gateway certificate: \"Self\" (dev), a registered CA issuer, or \"Unknown\" to merge a CA-signed certificate by hand."
  default     = "Unknown"
}

variable "mysql_admin_ssh_public_key" {
  type        = string
  description = "OpenSSH public key of the MySQL VM's administrator."
}

variable "repository_backend" {
  type        = string
  description = "Which database LiveOps' DB_URL (secret db-url) points at: postgres (Flexible Server) or mysql (the VM)."
  default     = "postgres"
}

variable "grafana_admin_object_ids" {
  type        = list(string)
  description = "Entra ID users or groups that administer the managed Grafana."
  default     = []
}

variable "alert_email_addresses" {
  type        = list(string)
  description = "Who the environment's Azure Monitor alerts mail (its action group): on-call people or a pager's e-mail integration. At least one: the Service Bus alerts that stand in for the bus_lag alerts reach nobody otherwise."
}

variable "alert_pager_webhook_url" {
  type        = string
  description = "The pager's webhook URL (PagerDuty, Opsgenie, ... integration; https://): the environment's critical Azure Monitor alerts (severity 0-1: the critical Prometheus rules of monitoring/prometheus/rules, a stalled Service Bus topic) call it besides mailing alert_email_addresses. Empty (the default): no pager, critical alerts are mailed only. It holds the integration's key: set it in <env>.site.tfvars, never in a committed file; sensitive, so plans and outputs never show it."
  default     = ""
  sensitive   = true

  validation {
    condition     = var.alert_pager_webhook_url == "" || startswith(var.alert_pager_webhook_url, "https://")
    error_message = "alert_pager_webhook_url must be empty (no pager) or an https:// URL."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource, besides env and app."
  default     = {}
}

# The environment's size: set by dev.tfvars and prod.tfvars, merged with the operator's inputs
# above into the inputs of modules/stack (whose variables.tf says what each attribute means).

variable "aks" {
  type = object({
    sku_tier        = string
    private_cluster = bool
    system_pool     = object({ vm_size = string, node_count = number })
    app_pool        = object({ vm_size = string, min_count = number, max_count = number })
  })
  description = "The cluster's tier, whether its API server is private, and its node pools."
}

variable "gateway" {
  type = object({
    min_capacity                = number
    max_capacity                = number
    login_rate_limit_per_minute = optional(number, 60)
    rate_limit_per_minute       = optional(number, 30000)
  })
  description = "The Application Gateway's autoscale bounds and its WAF rate limits per client address and minute: on /auth/login (brute force) and on every other request (abuse level; game servers and carrier NAT send thousands of requests a minute from one address)."
}

variable "registry_sku" {
  type        = string
  description = "The registry's SKU (Premium: zone-redundant, private endpoint only)."
}

variable "key_vault" {
  type        = object({ sku_name = string, secret_expiry_days = number, public_network_access_enabled = bool })
  description = "The vault's SKU, the days after which its secrets expire, whether it keeps a public endpoint."
}

variable "redis" {
  type        = object({ sku_name = string, capacity = number, persistence = string, replicas_per_primary = optional(number, 2) })
  description = "The cache's SKU, size, persistence and replicas (modules/stack variable redis)."
}

variable "postgres" {
  type        = object({ sku_name = string, storage_mb = number, high_availability = bool, backup_retention_days = number, geo_redundant_backup = bool, read_replica = bool })
  description = "The PostgreSQL server's SKU, storage, HA, backups and replica (modules/stack variable postgres)."
}

variable "servicebus" {
  type        = object({ sku = string, capacity = optional(number, 1), premium_messaging_partitions = optional(number, 1) })
  description = "The Service Bus namespace's SKU, messaging units and partitions (modules/stack variable servicebus)."
}

variable "mysql" {
  type        = object({ vm_size = string, disk_type = string, data_disk_size_gb = number, backup_disk_size_gb = number, azure_backup_enabled = bool })
  description = "The MySQL VM's size, disk type and sizes, and whether Azure Backup snapshots it."
}

variable "monitoring" {
  type = object({
    log_retention_days = number
    grafana_enabled    = bool
    zone_redundant     = bool
    # Alerts of monitoring/prometheus/rules the environment does not evaluate, by name.
    prometheus_alerts_disabled = optional(list(string))
    servicebus_alerts = optional(object({
      backlog_messages   = optional(number)
      backlog_window     = optional(string)
      stalled_window     = optional(string)
      errors_window      = optional(string)
      server_errors      = optional(number)
      throttled_requests = optional(number)
    }))
  })
  description = "Log Analytics retention, whether there is a managed Grafana, whether it is zone-redundant, the alert rules of monitoring/prometheus/rules the environment leaves off (prometheus_alerts_disabled, by alert name), and the thresholds and windows of the Service Bus alerts where an environment departs from the defaults (modules/stack variable monitoring, which holds the defaults)."
}
