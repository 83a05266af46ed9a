# frozen_string_literal: true

module Divvy
  # The interface of a divvy task. Include it in a class and define
  # #dispatch and #perform; the hooks are optional.
  module Parallelizable
    # Returns the classes that included this module, oldest first.
    def self.parallelizable
      @parallelizable ||= []
    end

    # Records each class that includes the module, so Divvy.load can find it.
    def self.included(klass)
      super
      parallelizable << klass
    end

    # Yields each work item, in the master. Every item is marshalled to a
    # worker and handed to #perform with the yielded arguments.
    #
    # Raises NotImplementedError unless the task defines it.
    def dispatch
      raise NotImplementedError, "#{self.class} must define #dispatch"
    end

    # Performs one item, in a worker. Receives exactly the arguments
    # #dispatch yielded. Returns anything; raises to fail the item.
    #
    # Raises NotImplementedError unless the task defines it (or #process, its
    # name in divvy 1.1).
    def perform(*_args)
      raise NotImplementedError, "#{self.class} must define #perform"
    end

    # Hook run in the master just before each worker is forked.
    #
    # worker - the Divvy::Worker about to start.
    #
    # Returns nothing meaningful.
    def before_fork(worker); end

    # Hook run in the worker right after it is forked, before it takes any
    # item: reopen connections and files here.
    #
    # worker - the Divvy::Worker that is now this process.
    #
    # Returns nothing meaningful. Raising (or exiting) fails the worker's boot.
    def after_fork(worker); end
  end
end
