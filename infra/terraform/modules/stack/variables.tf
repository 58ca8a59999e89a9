variable "environment" {
  type        = string
  description = "Name of the environment (dev, prod), put in the env tag of every resource."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name, e.g. \"liveops-prod\"; at most 21 characters, so that every name built from it fits Azure's limits (storage accounts: 24)."

  validation {
    condition     = length(var.name_prefix) <= 21 && can(regex("^[a-z][a-z0-9-]{2,}$", var.name_prefix))
    error_message = "name_prefix must be 3-21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "location" {
  type        = string
  description = "Azure region with three availability zones, e.g. \"westeurope\"."
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource, besides env, app and managed-by."
  default     = {}
}

variable "repository_backend" {
  type        = string
  description = "Which database LiveOps' DB_URL (secret db-url) points at: postgres (Flexible Server) or mysql (the VM)."

  validation {
    condition     = contains(["postgres", "mysql"], var.repository_backend)
    error_message = "repository_backend must be postgres or mysql."
  }
}

variable "network" {
  type = object({
    address_space  = string
    admin_ssh_cidr = string
  })
  description = "CIDR of the virtual network (a /16 or larger, carved into the subnets) and the CIDR (bastion or VPN) allowed to SSH to the MySQL VM; empty closes SSH."

  validation {
    condition     = can(cidrhost(var.network.address_space, 0)) && tonumber(split("/", var.network.address_space)[1]) <= 16
    error_message = "network.address_space must be a CIDR of /16 or larger, e.g. 10.40.0.0/16."
  }

  validation {
    condition     = var.network.admin_ssh_cidr == "" || (can(cidrhost(var.network.admin_ssh_cidr, 0)) && var.network.admin_ssh_cidr != "0.0.0.0/0")
    error_message = "network.admin_ssh_cidr must be empty or a CIDR narrower than 0.0.0.0/0."
  }
}

variable "aks" {
  type = object({
    kubernetes_version       = string
    sku_tier                 = string
    private_cluster          = bool
    api_authorized_ip_ranges = optional(list(string), [])
    admin_group_object_ids   = list(string)
    system_pool              = object({ vm_size = string, node_count = number })
    app_pool                 = object({ vm_size = string, min_count = number, max_count = number })
  })
  description = "The cluster: Kubernetes minor version; control plane tier (Standard has the uptime SLA); a private API server, or a public one limited to api_authorized_ip_ranges; the Entra ID groups that administer it (local accounts are off); the system pool (critical add-ons, fixed size) and the autoscaled application pool."

  validation {
    condition     = can(regex("^1\\.[0-9]+$", var.aks.kubernetes_version))
    error_message = "aks.kubernetes_version must be a minor version such as 1.32."
  }

  validation {
    condition     = contains(["Free", "Standard", "Premium"], var.aks.sku_tier)
    error_message = "aks.sku_tier must be Free, Standard or Premium."
  }

  validation {
    condition     = var.aks.private_cluster || (length(var.aks.api_authorized_ip_ranges) > 0 && !contains(var.aks.api_authorized_ip_ranges, "0.0.0.0/0"))
    error_message = "A public API server needs aks.api_authorized_ip_ranges, and not 0.0.0.0/0; otherwise set aks.private_cluster."
  }

  validation {
    condition     = length(var.aks.admin_group_object_ids) > 0
    error_message = "At least one admin group is needed: local accounts are disabled."
  }

  validation {
    condition     = var.aks.app_pool.min_count >= 1 && var.aks.app_pool.max_count >= var.aks.app_pool.min_count && var.aks.app_pool.max_count <= 100
    error_message = "aks.app_pool needs 1 <= min_count <= max_count <= 100."
  }
}

variable "gateway" {
  type = object({
    hostnames          = list(string)
    certificate_issuer = string
    min_capacity       = number
    max_capacity       = number
    # WAF rate limits per client address, requests a minute (gateway.tf): the operators' login
    # (brute force) and everything else (abuse level: a game server or a carrier NAT sends
    # thousands of events a minute from one address).
    login_rate_limit_per_minute = optional(number, 60)
    rate_limit_per_minute       = optional(number, 30000)
  })
  description = "The Application Gateway: the host names of its TLS certificate (the first is its subject), the certificate's Key Vault issuer (\"Self\", \"Unknown\" for a CSR to merge by hand, or a registered CA issuer), its autoscale bounds and the WAF's rate limits per client address and minute (login_rate_limit_per_minute on /auth/login, rate_limit_per_minute on every other request)."

  validation {
    condition     = length(var.gateway.hostnames) > 0
    error_message = "At least one host name is needed for the gateway certificate."
  }

  validation {
    condition     = var.gateway.min_capacity >= 0 && var.gateway.max_capacity >= max(2, var.gateway.min_capacity) && var.gateway.max_capacity <= 125
    error_message = "The gateway autoscales between min_capacity >= 0 and max_capacity, at least 2 and at most 125."
  }

  validation {
    condition     = var.gateway.login_rate_limit_per_minute >= 1 && var.gateway.rate_limit_per_minute >= var.gateway.login_rate_limit_per_minute
    error_message = "gateway.login_rate_limit_per_minute must be at least 1 and rate_limit_per_minute at least as large (a WAF rate limit blocks a client address for the rest of the window)."
  }
}

variable "registry" {
  type = object({
    name              = string
    sku               = string
    push_principal_id = string
  })
  description = "The container registry: its globally unique name, its SKU (Premium: zone-redundant, private endpoint only; Standard: public endpoint) and the CI principal given AcrPush."

  validation {
    condition     = can(regex("^[a-zA-Z0-9]{5,50}$", var.registry.name)) && contains(["Basic", "Standard", "Premium"], var.registry.sku)
    error_message = "registry.name must be 5-50 letters or digits, registry.sku Basic, Standard or Premium."
  }
}

variable "key_vault" {
  type = object({
    name                          = string
    sku_name                      = string
    secret_expiry_days            = number
    public_network_access_enabled = bool
    allowed_ip_ranges             = list(string)
  })
  description = "The vault: its globally unique name; its SKU (premium: HSM-backed keys); the days after which secrets expire (Terraform moves the expiry forward once it is reached, so an expiry alert means rotate); whether it keeps a public endpoint (default deny either way) and the CIDRs let through its firewall."

  validation {
    condition     = var.key_vault.secret_expiry_days >= 30 && var.key_vault.secret_expiry_days <= 730
    error_message = "key_vault.secret_expiry_days must be between 30 and 730."
  }

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$", var.key_vault.name)) && contains(["standard", "premium"], var.key_vault.sku_name)
    error_message = "key_vault.name must be 3-24 letters, digits or dashes starting with a letter, key_vault.sku_name standard or premium."
  }
}

variable "redis" {
  type = object({
    sku_name             = string
    capacity             = number
    persistence          = string
    replicas_per_primary = optional(number, 2)
  })
  description = "The cache: SKU (Premium: zones, replicas, persistence), size within the SKU family (C0-C6, P1-P5), persistence to a storage account (\"aof\": every write, flushed each second; \"rdb\": snapshots; \"none\"), and for Premium the replicas of each primary (two put a node in each of three zones)."

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.redis.sku_name) && var.redis.capacity >= 0 && var.redis.capacity <= 6
    error_message = "redis.sku_name must be Basic, Standard or Premium, redis.capacity between 0 and 6."
  }

  validation {
    condition     = contains(["aof", "rdb", "none"], var.redis.persistence) && (var.redis.sku_name == "Premium" || var.redis.persistence == "none")
    error_message = "redis.persistence must be aof, rdb or none (Azure refuses AOF and RDB together), and none below Premium."
  }
}

variable "postgres" {
  type = object({
    sku_name              = string
    storage_mb            = number
    high_availability     = bool
    backup_retention_days = number
    geo_redundant_backup  = bool
    read_replica          = bool
  })
  description = "The PostgreSQL server: compute SKU (zone-redundant HA needs General Purpose or Memory Optimized), storage in MiB (grows automatically), a hot standby in another zone, the point-in-time restore window, backups copied to the paired region, a read replica."

  validation {
    condition     = var.postgres.backup_retention_days >= 7 && var.postgres.backup_retention_days <= 35
    error_message = "postgres.backup_retention_days must be between 7 and 35."
  }
}

variable "servicebus" {
  type = object({
    sku                          = string
    capacity                     = optional(number, 1)
    premium_messaging_partitions = optional(number, 1)
  })
  description = "The Service Bus namespace: SKU (Premium: zone-redundant, dedicated, private endpoint only; Standard: public endpoint; Basic has no topics) and, for Premium, its messaging units and partitions (fixed at creation; more than one lets the topics be partitioned)."

  validation {
    condition     = contains(["Standard", "Premium"], var.servicebus.sku) && contains([1, 2, 4, 8, 16], var.servicebus.capacity) && contains([1, 2, 4], var.servicebus.premium_messaging_partitions)
    error_message = "servicebus.sku must be Standard or Premium, capacity 1, 2, 4, 8 or 16, premium_messaging_partitions 1, 2 or 4."
  }
}

variable "mysql" {
  type = object({
    vm_size              = string
    admin_ssh_public_key = string
    disk_type            = string
    data_disk_size_gb    = number
    backup_disk_size_gb  = number
    azure_backup_enabled = bool
  })
  description = "The MySQL VM: its size, the OpenSSH public key of its administrator (password login is off), the type and sizes of its data and dump disks, and whether Azure Backup also snapshots the whole VM daily."

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256) ", var.mysql.admin_ssh_public_key)) && contains(["Standard_LRS", "StandardSSD_LRS", "Premium_LRS", "PremiumV2_LRS"], var.mysql.disk_type)
    error_message = "mysql.admin_ssh_public_key must be an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa), mysql.disk_type a zonal (LRS) disk type."
  }
}

variable "monitoring" {
  type = object({
    log_retention_days       = number
    grafana_enabled          = bool
    grafana_admin_object_ids = optional(list(string), [])
    # Who may write dashboards (Grafana Editor): the CI service principal that imports
    # monitoring/grafana/dashboards (ci/Jenkinsfile).
    grafana_editor_object_ids = optional(list(string), [])
    zone_redundant            = bool
    alert_email_addresses     = list(string)
    # The pager's webhook (PagerDuty, Opsgenie, ...): critical alerts (severity 0-1) go there too;
    # "" = none, they are mailed only. Sensitive in envs/ (it holds the integration's key).
    alert_pager_webhook_url = optional(string, "")
    # Alerts of monitoring/prometheus/rules this environment does not evaluate, by name
    # (prometheus-rules.tf.json); every other rule is evaluated by Azure.
    prometheus_alerts_disabled = optional(list(string), [])
    servicebus_alerts = optional(object({
      backlog_messages   = optional(number, 5000)
      backlog_window     = optional(string, "PT15M")
      stalled_window     = optional(string, "PT5M")
      errors_window      = optional(string, "PT15M")
      server_errors      = optional(number, 5)
      throttled_requests = optional(number, 0)
    }), {})
  })
  description = "Days Log Analytics keeps container logs and diagnostics; the managed Grafana on the managed Prometheus: whether there is one, who administers it, whether it is zone-redundant; who may import dashboards into it (grafana_editor_object_ids: Grafana Editor, the CI service principal); who the Azure Monitor alerts mail (the action groups' receivers: people, or a pager's e-mail integration); the pager webhook critical alerts (severity 0-1) also call (alert_pager_webhook_url, empty for none); the alert rules of monitoring/prometheus/rules (prometheus-rules.tf.json, evaluated by Azure managed Prometheus) this environment leaves off (prometheus_alerts_disabled, by alert name, e.g. LiveOpsBackupMissing where no process keeps local files to back up); and the Service Bus metric alerts that stand in for the bus_lag alerts, which cannot fire with BUS_KIND=servicebus (monitoring.tf). backlog_messages: a topic's active messages (its subscriptions together) stayed above this for all of backlog_window (for LiveOpsBusLagGrowing, warning); stalled_window: messages waited on a topic and none was received from it for that long (for LiveOpsConsumerStalled, critical); server_errors, throttled_requests: more than this many Service Bus server errors or throttled requests within errors_window (warning). Windows are ISO 8601 durations: PT5M, PT15M, PT30M or PT1H."

  validation {
    condition     = var.monitoring.alert_pager_webhook_url == "" || startswith(var.monitoring.alert_pager_webhook_url, "https://")
    error_message = "monitoring.alert_pager_webhook_url must be empty (no pager) or an https:// URL."
  }

  validation {
    condition     = alltrue([for a in var.monitoring.prometheus_alerts_disabled : can(regex("^[a-zA-Z_:][a-zA-Z0-9_:]*$", a))])
    error_message = "monitoring.prometheus_alerts_disabled lists alert names of monitoring/prometheus/rules (LiveOpsBackupMissing, ...); the plan also fails on a name no rule has."
  }

  validation {
    condition     = var.monitoring.log_retention_days >= 30 && var.monitoring.log_retention_days <= 730
    error_message = "monitoring.log_retention_days must be between 30 and 730."
  }

  validation {
    condition     = length(var.monitoring.alert_email_addresses) > 0 && alltrue([for a in var.monitoring.alert_email_addresses : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", a))])
    error_message = "monitoring.alert_email_addresses must list at least one e-mail address (name@domain), and only those: the Azure Monitor alerts (Service Bus backlog, stalled topics, dead letters) reach nobody otherwise."
  }

  validation {
    condition     = alltrue([for w in [var.monitoring.servicebus_alerts.backlog_window, var.monitoring.servicebus_alerts.stalled_window, var.monitoring.servicebus_alerts.errors_window] : contains(["PT5M", "PT15M", "PT30M", "PT1H"], w)])
    error_message = "monitoring.servicebus_alerts.backlog_window, stalled_window and errors_window must be PT5M, PT15M, PT30M or PT1H."
  }

  validation {
    condition     = var.monitoring.servicebus_alerts.backlog_messages >= 1 && var.monitoring.servicebus_alerts.server_errors >= 0 && var.monitoring.servicebus_alerts.throttled_requests >= 0
    error_message = "monitoring.servicebus_alerts.backlog_messages must be at least 1, server_errors and throttled_requests at least 0."
  }
}
